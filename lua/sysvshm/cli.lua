--- The `sysvshm` command: find, inspect and clean up System V shared memory
-- segments from the shell, field by field.
--
--     sysvshm ls [--mine] [--json] [--shm|--sem]  segments and semaphore sets (ipcs)
--     sysvshm stat [--sem] ID | --key K [--json]  every field of one segment or set
--     sysvshm dump ID [--offset N] [--length N] hex and ASCII, like xxd
--     sysvshm dump ID --layout FILE [--struct NAME] [--offset N]
--     sysvshm dump ID --cdef FILE.h [--struct NAME] [--offset N]
--                                               one line per field
--     sysvshm watch ID --layout FILE|--cdef FILE.h [--struct NAME] [--interval S] [--frames N]
--                                               the field view, redrawn
--     sysvshm dict ID [--offset N] [--full] [--json]
--                                               the entries of a sysvshm.dict
--     sysvshm rm [--sem] ID... | --key K | --mine-unattached [--dry-run]
--     sysvshm new --size N [--key K] [--mode 0600]   create; prints the id
--
--     sysvshm demo NAME [ARG...]                 run a demo script (writer, reader, counter...)
--
-- Every command takes `--help`; `sysvshm help COMMAND` says the same. From a
-- checkout (after `make`) run it as `bin/sysvshm ...`: it then finds the
-- in-tree modules. Installed by the rockspec it is the `sysvshm` script.
--
-- This file is the command line and the public functions; each command is
-- a module of its own (`sysvshm.cli.commands.NAME`, with `def`, its options,
-- and `run`), on helpers by topic: `report` (failures, output), `format`,
-- `users`, `args`, `ipc` (looking segments and sets up), `fields` (the
-- layout view) and `dict_reader`.
--
-- **Exit status.** 0 when done; 1 when it could not be done: the system
-- refused (the message names the call, as `shmctl: Invalid argument`), the
-- segment does not exist or is too small, a layout file is broken, the
-- output cannot be written (a full disk, `> /dev/full`; `new` then removes
-- the segment it created, whose id would be lost); 2 for a
-- bad command line (the message and the usage go to standard error). A bug
-- gives status 70 and a one-line message; set `SYSVSHM_DEBUG=1` in the
-- environment for the traceback. Ctrl-C ends `watch` with status 0 and any
-- other command with 130.
--
-- **Layout files.** `dump --layout` and `watch --layout` read a Lua file
-- that returns either one layout made with `sysvshm.layout.struct`, or a
-- table of named layouts, of which `--struct NAME` picks one (needed when
-- there is more than one):
--
--     -- record_layout.lua
--     local layout = require "sysvshm.layout"
--     local point = layout.struct({ {"x", "d"}, {"y", "d"} }, "point")
--     local record = layout.struct({
--       {"magic", "I4"}, {"count", "i8"}, {"name", "c16"},
--       {"samples", "d", 8}, {"origin", point},
--     }, "record")
--     return { record = record, point = point }
--
-- The file is an ordinary Lua chunk run with the usual globals, so it may
-- `require` shared definitions. The struct starts at `--offset` (default 0,
-- a multiple of its alignment). Each field is one line: its offset in the
-- segment, its C type, its name and its value; nested structs and arrays of
-- structs are shown member by member (`origin.x`, `pts[2].y`), arrays of
-- numbers on one line with runs of equal values folded (`0 (x15)`) and,
-- unless `--full` is given, cut after 16 items; text fields (`cN`) are
-- quoted, non-printable bytes as `\xNN`. `lua/demo/record_layout.lua` is a
-- complete example.
--
-- **C headers.** Instead of a layout file, `--cdef FILE.h` reads the
-- struct from the C header the writer compiles (`sysvshm.layout.cdef`:
-- `struct` and `typedef struct` declarations; prototypes, enums and most
-- preprocessor lines are skipped). `--struct NAME` names the struct (a tag
-- or a typedef name), needed when the header declares several that no
-- other struct contains. A construct it cannot share (a pointer, a
-- bit-field, a union member...) fails with its line number.
--
-- The segment is attached read-only by `dump` and `watch`, and a snapshot
-- is not atomic: a process writing while it is read may show half-updated
-- records (guard them with a mutex if that matters).
-- @module sysvshm.cli

local shm = require "sysvshm"
local options = require "sysvshm.options"
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"
local ipc = require "sysvshm.cli.ipc"
local dict_reader = require "sysvshm.cli.dict_reader"

local PROG, Failure, usage_error, emit = report.PROG, report.Failure, report.usage_error, report.emit
local parse = require("sysvshm.cli.args").parse

local M = {}

local sformat, concat = string.format, table.concat

-- The public functions and tables, documented in the modules that hold
-- them: `json`, `json_array`, `human_size` and `mode_string`
-- (sysvshm.cli.format), `FIELDS` and `SEM_FIELDS` (sysvshm.cli.ipc),
-- `read_dict` and `DICT_STATS` (sysvshm.cli.dict_reader).
M.json, M.json_array = format.json, format.json_array
M.human_size, M.mode_string = format.human_size, format.mode_string
M.FIELDS, M.SEM_FIELDS = ipc.FIELDS, ipc.SEM_FIELDS
M.read_dict, M.DICT_STATS = dict_reader.read_dict, dict_reader.DICT_STATS

-- ---- commands -------------------------------------------------------------------------

-- In the order `sysvshm --help` lists them.
local COMMANDS = { "ls", "stat", "dump", "watch", "dict", "rm", "new", "demo" }

local commands, order = {}, {}

for _, name in ipairs(COMMANDS) do
  local c = require("sysvshm.cli.commands." .. name)
  local def = {}
  for k, v in pairs(c.def) do
    def[k] = v
  end
  def.summary = nil -- the CLI's own field, not one of options.new's
  def.prog = PROG .. " " .. name
  commands[name] = { parser = options.new(def), run = c.run, summary = c.def.summary }
  order[#order + 1] = name
end

-- ---- the main parser --------------------------------------------------------------

local function main_parser()
  local lines = {}
  for _, name in ipairs(order) do
    lines[#lines + 1] = sformat("  %-6s %s", name, commands[name].summary)
  end
  return options.new {
    prog = PROG,
    args = "COMMAND [ARG...]",
    options_first = true,
    description = "Find, inspect and clean up System V shared memory segments.\n\ncommands:\n"
      .. concat(lines, "\n") .. "\n  help   the usage of a command",
    epilog = "'sysvshm COMMAND --help' shows a command's options.\n"
      .. "Exit status: 0 ok, 1 refused by the system or not possible, 2 bad usage.",
    { "version", short = "V", type = "flag", help = "show the version and exit" },
  }
end

local function run(args)
  local top = main_parser()
  local g = parse(top, args)
  if not g then
    return 0
  end
  if g.version then
    emit(shm._VERSION, "\n")
    return 0
  end
  local name = g[1]
  if name == nil then
    usage_error(top, "missing command")
  end
  local rest = table.move(g, 2, #g, 1, {})
  if name == "help" then
    local which = rest[1]
    if which == nil then
      emit(top:usage())
      return 0
    elseif commands[which] == nil or #rest > 1 then
      usage_error(top, "help: unknown command '%s'", rest[#rest])
    end
    emit(commands[which].parser:usage())
    return 0
  end
  local cmd = commands[name]
  if cmd == nil then
    usage_error(top, "unknown command '%s'", name)
  end
  local opts = parse(cmd.parser, rest)
  if not opts then
    return 0
  end
  return cmd.run(opts, cmd.parser)
end

--- Run the command line `args` (`args[1]` the subcommand, as `arg` holds
-- it) and return the exit status: 0 done, 1 not possible (refused by the
-- system, no such segment, a bad layout file), 2 bad usage, 70 a bug, 130
-- interrupted. Messages go to standard error; nothing is raised.
-- @tparam {string,...} args
-- @treturn integer the exit status
-- @usage os.exit(require("sysvshm.cli").main(arg))
function M.main(args)
  args = args or {}
  local strs = {}
  for i = 1, #args do
    strs[i] = tostring(args[i])
  end
  local ok, res = xpcall(run, function(e)
    if getmetatable(e) == Failure then
      return e
    end
    if type(e) == "string" and e:match("interrupted!$") then
      return setmetatable({ status = 130, message = "interrupted" }, Failure)
    end
    local msg = "internal error: " .. tostring(e)
    if os.getenv("SYSVSHM_DEBUG") then
      msg = debug.traceback(msg, 2)
    else
      msg = msg .. " (run with SYSVSHM_DEBUG=1 for details)"
    end
    return setmetatable({ status = 70, message = msg }, Failure)
  end, strs)
  -- What is still buffered must reach its destination too.
  local flushed, ferr = io.stdout:flush()
  if not flushed and (ok or res.status == 0) then
    ok, res = false, setmetatable({ status = 1, message = "cannot write the output: " .. tostring(ferr) }, Failure)
  end
  if ok then
    return res
  end
  local cmd = commands[strs[1]]
  local prog = res.parser and res.parser.prog or cmd and cmd.parser.prog or PROG
  io.stderr:write(prog, ": ", res.message, "\n")
  if res.parser then
    io.stderr:write(res.parser:usage())
  end
  return res.status
end

return M
