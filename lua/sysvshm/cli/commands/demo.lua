-- `sysvshm demo`: run one of the demo scripts, from a checkout or from
-- where the rockspec (or `make install`) put them, with the search paths
-- this command runs with (so an installed tree finds its own modules).
local report = require "sysvshm.cli.report"

local M = {}

local sformat, concat = string.format, table.concat

--- The demos `sysvshm demo` runs, in the order it lists them (the scripts
-- of lua/demo/ but the prelude and the example layout file).
M.DEMOS = {
  { "writer", "append to a string in a segment (with reader: make demo)" },
  { "reader", "print the writer's string as it grows" },
  { "counter", "N processes add to shared counters, none is lost" },
  { "pipeline", "producers and consumers through a sysvshm.channel" },
  { "ratelimit", "a rate limiter shared by worker processes (sysvshm.dict)" },
  { "semwriter", "appends under a System V semaphore, with a C peer" },
}

-- The Lua tree this module is in: <tree>/sysvshm/cli/commands/demo.lua.
local TREE = debug.getinfo(1, "S").source:match("^@(.*)/sysvshm/cli/commands/[^/]*$")

local function exists(path)
  local f = io.open(path)
  return f ~= nil and f:close()
end

-- The file of demo `name`: installed beside the modules (sysvshm/demo/), or
-- in a checkout's lua/demo/.
local function demo_file(name)
  if TREE then
    for _, dir in ipairs { "/sysvshm/demo/", "/demo/" } do
      local path = TREE .. dir .. name .. ".lua"
      if exists(path) then
        return path
      end
    end
  end
  return nil
end

-- The interpreter running this script: the first word of its command line
-- (arg's lowest index; luarocks' wrapper puts `-e code` between).
local function interpreter()
  local lua, i = nil, -1
  while arg and arg[i] ~= nil do
    lua, i = arg[i], i - 1
  end
  return lua or "lua5.4"
end

local function quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local function listing()
  local lines = {}
  for _, d in ipairs(M.DEMOS) do
    lines[#lines + 1] = sformat("  %-10s %s", d[1], d[2])
  end
  return concat(lines, "\n")
end

M.def = {
  summary = "run a demo script (writer, reader, counter, ...)",
  args = "[NAME [ARG...]]",
  options_first = true,
  description = "Run demo NAME with the arguments that follow (NAME --help shows its\n"
    .. "options), from the installed tree or the checkout, with this command's\n"
    .. "module search paths. Without NAME, list the demos:\n" .. listing(),
  epilog = "The writer and the reader go together: start a writer in the background,\n"
    .. "then a reader with the same --path and --proj, as `make demo` does.\n"
    .. "The exit status is the demo's.",
}

function M.run(opts, parser)
  local name = opts[1]
  if name == nil then
    report.emit(listing(), "\n")
    return 0
  end
  local known = false
  for _, d in ipairs(M.DEMOS) do
    known = known or d[1] == name
  end
  if not known then
    report.usage_error(parser, "unknown demo '%s'", name)
  end
  local path = demo_file(name)
  if not path then
    report.fail("demo %s is not installed beside the sysvshm modules (%s)", name, tostring(TREE))
  end
  local words = { "exec env", "LUA_PATH_5_4=" .. quote(package.path),
                  "LUA_CPATH_5_4=" .. quote(package.cpath), quote(interpreter()), quote(path) }
  for i = 2, #opts do
    words[#words + 1] = quote(opts[i])
  end
  report.flush_out()
  local _, how, code = os.execute(concat(words, " "))
  if how == "signal" then
    return 128 + code
  end
  return code
end

return M
