-- `sysvshm watch`: the fields of a layout, redrawn as they change.
local shm = require "sysvshm"
local report = require "sysvshm.cli.report"
local args = require "sysvshm.cli.args"
local ipc = require "sysvshm.cli.ipc"
local fields = require "sysvshm.cli.fields"

local M = {}

local sformat, concat = string.format, table.concat

-- Whether standard output is a terminal (plain Lua has no isatty: ask
-- test(1), which inherits our standard output).
local function stdout_is_tty()
  local term = os.getenv("TERM")
  if term == nil or term == "" or term == "dumb" then
    return false
  end
  return os.execute("test -t 1") == true
end

M.def = fields.with_layout_options({
  summary = "show the fields of a layout, redrawn as they change",
  description = "Show the fields of a layout in the segment every interval, as dump\n"
    .. "--layout does, marking with * the fields that changed since the last frame.\n"
    .. "On a terminal the screen is redrawn in place; otherwise the frames follow\n"
    .. "each other, separated by a blank line. Ctrl-C stops it.",
  { "offset", short = "o", type = "integer", min = 0, default = 0, help = "where the struct starts" },
  { "interval", short = "i", type = "number", min = 0, default = 1, metavar = "S",
    help = "seconds between frames" },
  { "frames", short = "f", type = "integer", min = 1, help = "stop after N frames (default: never)" },
})

function M.run(opts, parser)
  local id = args.parse_id(parser, opts[1])
  local L = fields.options_layout(parser, opts, "watch needs --layout FILE or --cdef FILE.h")
  local seg <close> = ipc.attach_ro(id)
  fields.check_place(L, seg, id, opts.offset)
  local ansi = stdout_is_tty()
  local max = not opts.full and fields.MAX_ITEMS or nil
  local prev, frame = nil, 0

  local function draw()
    frame = frame + 1
    local lines = fields.field_lines(L, L:read(seg, opts.offset), opts.offset, "", max)
    local marks = {}
    for i, l in ipairs(lines) do
      marks[i] = prev ~= nil and l[5] ~= prev[i][5]
    end
    prev = lines
    local st = shm.stat(id)
    local head = sformat("segment %d, struct %s at offset %d, frame %d, %s%s", id, L.name or "{...}",
                         opts.offset, frame, os.date("%H:%M:%S"),
                         st and sformat(", %d attached%s", st.nattch, st.removed and ", removed" or "")
                         or ", removed")
    local text = fields.render_fields(lines, marks, ansi)
    if ansi then
      report.emit("\27[H\27[2J", head, "\n\n", concat(text, "\n"), "\n")
    else
      report.emit(frame > 1 and "\n" or "", head, "\n", concat(text, "\n"), "\n")
    end
    report.flush_out()
  end

  local ok, err = pcall(function()
    draw()
    while not opts.frames or frame < opts.frames do
      ipc.sleep(opts.interval)
      draw()
    end
  end)
  if not ok then
    if type(err) == "string" and err:match("interrupted!$") then
      return 0 -- Ctrl-C: the way to stop watching
    end
    error(err, 0)
  end
  return 0
end

return M
