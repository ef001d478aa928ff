-- `sysvshm dump`: the bytes of a segment (like xxd), or the fields of a layout.
local report = require "sysvshm.cli.report"
local args = require "sysvshm.cli.args"
local ipc = require "sysvshm.cli.ipc"
local fields = require "sysvshm.cli.fields"

local M = {}

local sformat = string.format

M.def = fields.with_layout_options({
  summary = "show the bytes (like xxd), or the fields of a layout",
  description = "Show the segment's bytes in hex and ASCII, like xxd (offsets from the\n"
    .. "segment start), or with --layout one line per field: offset, C type, name\n"
    .. "and value.",
  { "offset", short = "o", type = "integer", min = 0, default = 0,
    help = "where to start; with --layout, where the struct starts" },
  { "length", short = "n", type = "integer", min = 0, help = "bytes to show (default: to the end)" },
})

function M.run(opts, parser)
  local id = args.parse_id(parser, opts[1])
  if (opts.layout ~= nil or opts.cdef ~= nil) and opts.length ~= nil then
    report.usage_error(parser, "--length does not go with --layout (the struct has its own size)")
  end
  local L = fields.options_layout(parser, opts)
  local seg <close> = ipc.attach_ro(id)
  local size, off = #seg, opts.offset

  if L then
    fields.check_place(L, seg, id, off)
    local lines = fields.field_lines(L, L:read(seg, off), off, "", not opts.full and fields.MAX_ITEMS or nil)
    report.emit_lines(fields.render_fields(lines))
    return 0
  end

  if off > size then
    report.fail("offset %d is past the end of segment %d (%d bytes)", off, id, size)
  end
  local len = size - off
  if opts.length and opts.length < len then
    len = opts.length
  end
  local out, stop = {}, off + len
  for pos = off, stop - 1, 16 do
    local n = math.min(16, stop - pos)
    local bytes = seg:read(pos, n)
    local hex = ("%02x"):rep(n):format(bytes:byte(1, n))
    hex = hex:gsub("(%x%x%x%x)", "%1 "):gsub(" $", "")
    out[#out + 1] = sformat("%08x: %-39s  %s", pos, hex, (bytes:gsub("[^\32-\126]", ".")))
    if #out == 256 then
      report.emit_lines(out)
      out = {}
    end
  end
  report.emit_lines(out)
  return 0
end

return M
