--- A small command-line option parser for the sysvshm scripts.
--
-- Long options `--name value` and `--name=value`, short aliases (`-n value`,
-- `-nvalue`, bundled flags `-ab`), flags, typed values, defaults, range
-- checks, positional arguments and a generated usage text. `-h`/`--help`
-- is built in. A bad command line is never a raised error: `parse` returns
-- `nil, message`, and `parse_or_exit` prints that one line and the usage on
-- standard error and exits with status 2.
--
--    local options = require "sysvshm.options"
--    local cli = options.new {
--      prog = "writer.lua",
--      description = "Append an 'A' to a shared memory segment.",
--      { "proj", type = "integer", default = 0x66, default_text = "0x66",
--        min = 1, max = 255, metavar = "N", help = "ftok project id" },
--      { "count", short = "c", type = "integer", min = 1,
--        help = "stop after N appends" },
--      { "verbose", short = "v", type = "flag", help = "say more" },
--    }
--    local opts = cli:parse_or_exit(arg)  -- opts.proj, opts.count, opts.verbose
--
-- Types: "string" (the default), "integer" (decimal or 0x hex, optional sign),
-- "number" (anything `tonumber` takes, finite) and "flag" (no value; true
-- when given, false otherwise). An option without a default and not given is
-- nil. Names may contain dashes; the result key has underscores instead
-- (`--dry-run` gives `opts.dry_run`). A repeated option keeps its last value.
--
-- Positional arguments end up in the array part of the result (`opts[1]`,
-- `#opts`); they are refused unless the parser has `args` (the text shown in
-- the usage line), and `min_args`/`max_args` bound their number. `--` ends
-- the options. With `options_first = true` the options end at the first
-- positional argument, which suits subcommands:
--
--    local main = options.new { prog = "tool", args = "COMMAND [ARG...]",
--                               min_args = 1, options_first = true }
--    local g = main:parse_or_exit(arg)
--    local sub = subcommands[g[1]] or main:error("unknown command '" .. g[1] .. "'")
--    local o = sub:parse_or_exit({ table.unpack(g, 2) })
--
-- @module sysvshm.options
local M = {}

--- Converters from the text of a value: return the value, or nil and why not.
-- Exported so that scripts can reuse them for positional arguments.
-- @table types
M.types = {}

function M.types.string(s)
  return s
end

function M.types.integer(s)
  local sign, hex = s:match("^([+-]?)0[xX](%x+)$")
  if hex then
    -- At most 15 significant hex digits: wider values would wrap around.
    if #hex:gsub("^0+", "") > 15 then
      return nil, "is out of range"
    end
    local v = tonumber(hex, 16)
    return sign == "-" and -v or v
  end

  if not s:match("^[+-]?%d+$") then
    return nil, "is not an integer"
  end
  -- A decimal too large for an integer becomes a float: refuse it.
  local v = math.tointeger(tonumber(s))
  if not v then
    return nil, "is out of range"
  end
  return v
end

function M.types.number(s)
  local v = tonumber(s)
  if not v then
    return nil, "is not a number"
  end
  if v ~= v or v == math.huge or v == -math.huge then
    return nil, "is not a finite number"
  end
  return v
end

local METAVARS = { string = "STR", integer = "N", number = "X" }

local Parser = {}
Parser.__index = Parser

local function basename(path)
  return path and path:match("([^/]*)$") or "script"
end

local function option_error(spec, fmt, ...)
  error({ message = ("option --%s: " .. fmt):format(spec.name, ...) }, 0)
end

local DEF_KEYS = { prog = true, description = true, epilog = true, args = true, min_args = true,
                   max_args = true, options_first = true }
local OPTION_KEYS = { name = true, short = true, type = true, default = true, default_text = true,
                      metavar = true, help = true, min = true, max = true, check = true }

-- Raise, at the caller of `new`, for a key that is not one of `known` (nor
-- an index 1..n when `n` is given): a typo such as {min_arg = 1} or
-- {defualt = 3} is an error, not silently ignored.
local function checkkeys(t, known, n, what)
  for k in pairs(t) do
    local index = math.type(k) == "integer" and k >= 1 and k <= n
    if not index and not known[k] then
      local names = {}
      for name in pairs(known) do
        names[#names + 1] = name
      end
      table.sort(names)
      error(("options.new: unknown field '%s' in %s (known: %s)")
            :format(tostring(k), what, table.concat(names, ", ")), 3)
    end
  end
end

--- Make a parser.
-- @tparam table def `prog` (default: the basename of arg[0]), `description`,
--   `epilog` (texts for the usage), `args` (usage text for positional
--   arguments), `min_args`, `max_args`, `options_first`, and in its array
--   part one table per option: `name` (or the first element), `short` (one
--   letter), `type`, `default`, `default_text`, `metavar`, `help`, `min`,
--   `max`, and `check` (a function of the converted value returning true,
--   or nil and a message). Any other field, in `def` or in an option, is an
--   error (a misspelt `min_args` or `default` would otherwise be ignored).
-- @treturn Parser
function M.new(def)
  if type(def) ~= "table" then
    error(("bad argument #1 to 'new' (table expected, got %s)"):format(type(def)), 2)
  end
  checkkeys(def, DEF_KEYS, #def, "the parser definition")
  for i, o in ipairs(def) do
    if type(o) ~= "table" then
      error(("bad argument #1 to 'new' (option #%d is a %s, not a table)"):format(i, type(o)), 2)
    end
    local what = ("option #%d (%s)"):format(i, tostring(o.name or o[1]))
    checkkeys(o, OPTION_KEYS, o.name == nil and 1 or 0, what)
  end
  local p = setmetatable({
    prog = def.prog or basename(arg and arg[0]),
    description = def.description,
    epilog = def.epilog,
    args = def.args,
    min_args = def.min_args or 0,
    max_args = def.max_args or (def.args and math.huge or 0),
    options_first = def.options_first,
    list = {}, -- the option specs, in order
    long = {}, -- name -> spec
    short = {}, -- letter -> spec
  }, Parser)

  local function add(o)
    local spec = {
      name = o.name or o[1],
      short = o.short,
      type = o.type or "string",
      default = o.default,
      default_text = o.default_text,
      metavar = o.metavar,
      help = o.help or "",
      min = o.min,
      max = o.max,
      check = o.check,
    }
    assert(type(spec.name) == "string" and spec.name:match("^%w[%w-]*$"),
           "option name must be a word (letters, digits, dashes)")
    assert(spec.type == "flag" or M.types[spec.type],
           "unknown option type '" .. tostring(spec.type) .. "'")
    assert(not p.long[spec.name], "duplicate option --" .. spec.name)
    assert(spec.short == nil or (#spec.short == 1 and not p.short[spec.short]),
           "short option must be one letter, not used twice")
    spec.key = spec.name:gsub("-", "_")
    if spec.type == "flag" then
      spec.default = spec.default or false
    else
      spec.metavar = spec.metavar or METAVARS[spec.type] or "VALUE"
    end
    p.list[#p.list + 1] = spec
    p.long[spec.name] = spec
    if spec.short then
      p.short[spec.short] = spec
    end
  end

  for _, o in ipairs(def) do
    add(o)
  end
  if not p.long.help then
    add({ "help", short = not p.short.h and "h" or nil, type = "flag",
          help = "show this help and exit" })
  end
  return p
end

--- The usage text: a usage line, the description, the options, the epilog.
-- @treturn string (ends with a newline)
function Parser:usage()
  local out = { ("usage: %s [options]%s"):format(self.prog,
                                                self.args and " " .. self.args or "") }
  if self.description then
    out[#out + 1] = ""
    out[#out + 1] = self.description
  end
  out[#out + 1] = ""
  out[#out + 1] = "options:"

  local rows, width = {}, 0
  for _, spec in ipairs(self.list) do
    local left = (spec.short and "-" .. spec.short .. ", " or "    ") .. "--" .. spec.name
    if spec.type ~= "flag" then
      left = left .. " " .. spec.metavar
    end
    local help = spec.help
    local default = spec.default_text
    if default == nil and spec.type ~= "flag" and spec.default ~= nil then
      default = tostring(spec.default)
    end
    if default then
      help = help .. (help ~= "" and " " or "") .. "(default: " .. default .. ")"
    end
    rows[#rows + 1] = { left, help }
    width = math.max(width, #left)
  end
  for _, row in ipairs(rows) do
    out[#out + 1] = ("  %-" .. width .. "s  %s"):format(row[1], row[2]):gsub("%s+$", "")
  end

  if self.epilog then
    out[#out + 1] = ""
    out[#out + 1] = self.epilog
  end
  return table.concat(out, "\n") .. "\n"
end

-- Convert and check the text of a value for spec, or raise an error table.
local function convert(spec, text)
  local v, why = M.types[spec.type](text)
  if v == nil then
    option_error(spec, "'%s' %s", text, why)
  end
  if spec.min and v < spec.min then
    option_error(spec, "must be at least %s, not %s", spec.min, text)
  end
  if spec.max and v > spec.max then
    option_error(spec, "must be at most %s, not %s", spec.max, text)
  end
  if spec.check then
    local ok, msg = spec.check(v)
    if not ok then
      option_error(spec, "%s", msg or ("value '" .. text .. "' is not valid"))
    end
  end
  return v
end

-- The body of parse, raising {message = ...} for a bad command line.
local function parse(self, args)
  local opts, i = {}, 1

  -- Take the value of spec: `inline` if given (--name=v, -nv), else the
  -- next argument, whatever it looks like (as getopt does).
  local function take(spec, inline, shown)
    if spec.type == "flag" then
      if inline then
        option_error(spec, "takes no value")
      end
      opts[spec.key] = true
      return
    end
    if not inline then
      i = i + 1
      inline = args[i]
      if inline == nil then
        error({ message = ("option %s: needs a value (%s)"):format(shown, spec.metavar) }, 0)
      end
    end
    opts[spec.key] = convert(spec, inline)
  end

  local only_positional = false
  while i <= #args do
    local a = args[i]
    if only_positional or a == "-" or a:sub(1, 1) ~= "-" then
      opts[#opts + 1] = a
      only_positional = self.options_first
    elseif a == "--" then
      only_positional = true
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local spec = self.long[name]
      if not spec then
        error({ message = ("unknown option --%s"):format(name) }, 0)
      end
      take(spec, value, "--" .. name)
    else
      -- One or more short options: -v, -vc5, -c 5.
      local j = 2
      while j <= #a do
        local letter = a:sub(j, j)
        local spec = self.short[letter]
        if not spec then
          error({ message = ("unknown option -%s"):format(letter) }, 0)
        end
        local rest = a:sub(j + 1)
        if spec.type ~= "flag" then
          take(spec, rest ~= "" and rest or nil, "-" .. letter)
          break
        end
        take(spec, nil, "-" .. letter)
        j = j + 1
      end
    end
    i = i + 1
  end

  if opts.help then
    return opts
  end
  if #opts > self.max_args then
    error({ message = ("unexpected argument '%s'"):format(opts[self.max_args + 1]) }, 0)
  end
  if #opts < self.min_args then
    error({ message = ("missing argument%s"):format(self.args and " (" .. self.args .. ")" or "") }, 0)
  end
  for _, spec in ipairs(self.list) do
    if opts[spec.key] == nil then
      opts[spec.key] = spec.default
    end
  end
  return opts
end

--- Parse a list of arguments.
-- @tparam[opt=arg] table args the arguments, from index 1
-- @treturn[1] table the options by key, positional arguments at 1..n, and
--   `help = true` when -h/--help was given (then nothing else is checked)
-- @treturn[2] nil
-- @treturn[2] string a one-line message (without the program name)
function Parser:parse(args)
  args = args or arg or {}
  for k = 1, #args do
    if type(args[k]) ~= "string" then
      error(("bad argument #1 to 'parse' (argument %d is a %s, not a string)")
            :format(k, type(args[k])), 2)
    end
  end
  local ok, res = pcall(parse, self, args)
  if ok then
    return res
  end
  if type(res) == "table" and res.message then
    return nil, res.message
  end
  error(res, 0) -- a bug (or a raising `check`), not a bad command line
end

--- Print `prog: message` and the usage on standard error and exit.
-- @tparam string message one line
-- @tparam[opt=2] integer status the exit status
function Parser:error(message, status)
  io.stderr:write(self.prog, ": ", message, "\n", self:usage())
  os.exit(status or 2)
end

--- Parse, or exit.
-- On `-h`/`--help` print the usage on standard output and exit 0 (1 when
-- it cannot be written); on a bad command line call `error` (status 2).
-- @tparam[opt=arg] table args
-- @treturn table the options
function Parser:parse_or_exit(args)
  local opts, err = self:parse(args)
  if not opts then
    self:error(err)
  end
  if opts.help then
    local ok, why = io.stdout:write(self:usage())
    if ok then
      ok, why = io.stdout:flush()
    end
    if not ok then -- the usage was asked for and could not be given
      io.stderr:write(self.prog, ": cannot write the usage: ", tostring(why), "\n")
      os.exit(1)
    end
    os.exit(0)
  end
  return opts
end

return M
