-- `sysvshm dict`: the entries of a sysvshm.dict, read without its handle.
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"
local args = require "sysvshm.cli.args"
local ipc = require "sysvshm.cli.ipc"
local dict_reader = require "sysvshm.cli.dict_reader"

local M = {}

local sformat, concat = string.format, table.concat

-- Seconds left before an entry expires: nil never, 0 expired.
local function ttl_of(e, now_ms)
  if e.expire_ms == 0 then
    return nil
  end
  return math.max(0, e.expire_ms - now_ms) / 1000
end

local DICT_ENTRY_FIELDS = { "key", "key_hex", "type", "size", "flags", "ttl", "expired", "version",
                            "value", "value_hex", "items" }

local MAX_SHOWN = 40 -- bytes of a string value shown (without --full)

local function value_text(e, full)
  local v = e.value
  if e.type == "string" then
    if not full and #v > MAX_SHOWN then
      return format.quote_bytes(v:sub(1, MAX_SHOWN)) .. sformat("... (%d bytes)", #v)
    end
    return format.quote_bytes(v)
  elseif e.type == "list" then
    if v == nil then
      return "(malformed)"
    end
    return sformat("[%d item%s]", #v, #v == 1 and "" or "s")
  elseif e.type == "float" then
    return sformat("%.17g", v)
  elseif v == nil then
    return "?"
  end
  return tostring(v)
end

-- A string for JSON: itself when it is UTF-8, else nil (the caller then
-- gives its bytes in hex).
local function utf8_or_nil(s)
  return utf8.len(s) and s or nil
end

local function hex(s)
  return (s:gsub(".", function(c) return sformat("%02x", c:byte()) end))
end

M.def = {
  summary = "list the entries of a sysvshm.dict",
  args = "ID",
  min_args = 1,
  max_args = 1,
  description = "List the entries of the dictionary (sysvshm.dict) at --offset in the\n"
    .. "segment: key, value type, value size in bytes, flags, seconds to live (-\n"
    .. "for never) and the value (strings cut after 40 bytes unless --full), sorted\n"
    .. "by key, then the numbers of d:stats().",
  epilog = "The segment is attached read-only and nothing is written: no lock is taken\n"
    .. "and no read counts for the LRU order. The region is copied between two\n"
    .. "equal sequence numbers (a consistent snapshot; if writers never let it be\n"
    .. "one, the listing says so) and every offset in the copy is checked: what is\n"
    .. "not sound is left out and reported, with status 1.\n"
    .. "With --json, one object: id, offset, version, consistent, stats, entries\n"
    .. "(key, type, size, flags, ttl: seconds or null, expired, version, value for\n"
    .. "booleans, numbers and UTF-8 strings, items for lists; key_hex / value_hex\n"
    .. "for bytes that are not UTF-8), problems.",
  { "offset", short = "o", type = "integer", min = 0, default = 0,
    help = "where the dictionary starts (a multiple of 64)" },
  { "full", type = "flag", help = "show string values whole" },
  { "json", short = "j", type = "flag", help = "one JSON object instead of a table" },
}

function M.run(opts, parser)
  local id = args.parse_id(parser, opts[1])
  if opts.offset % dict_reader.DICT.ALIGN ~= 0 then
    report.usage_error(parser, "option --offset: %d is not a multiple of %d", opts.offset, dict_reader.DICT.ALIGN)
  end
  local seg <close> = ipc.attach_ro(id)
  local d, why = dict_reader.read_dict(seg, opts.offset)
  if not d then
    report.fail("segment %d: %s", id, why)
  end
  seg:detach()

  if opts.json then
    local list = setmetatable({}, format.json_array)
    for i, e in ipairs(d.entries) do
      local ttl = ttl_of(e, d.now_ms)
      local o = { key = utf8_or_nil(e.key), type = e.type, size = e.size, flags = e.flags,
                  ttl = ttl, expired = ttl == 0, version = e.version }
      if not o.key then
        o.key_hex = hex(e.key)
      end
      if e.type == "string" then
        o.value = utf8_or_nil(e.value)
        if not o.value then
          o.value_hex = hex(e.value)
        end
      elseif e.type == "list" then
        o.items = e.value and #e.value
      else
        o.value = e.value
      end
      -- every field that is there, and ttl also when it is null (never)
      local parts = {}
      for _, k in ipairs(DICT_ENTRY_FIELDS) do
        if o[k] ~= nil or k == "ttl" then
          parts[#parts + 1] = format.json(k) .. ":" .. format.json(o[k])
        end
      end
      list[i] = "{" .. concat(parts, ",") .. "}"
    end
    local problems = setmetatable({}, format.json_array)
    for i, p in ipairs(d.problems) do
      problems[i] = format.json(p)
    end
    report.emit("{", sformat('"id":%d,"offset":%d,"version":%d,"consistent":%s,"stats":%s,', id,
                      opts.offset, d.version, tostring(d.consistent), format.json(d.stats, dict_reader.DICT_STATS)),
         '"entries":[', concat(list, ","), '],"problems":[', concat(problems, ","), "]}\n")
  else
    local rows = { { "KEY", "TYPE", "SIZE", "FLAGS", "TTL", "VALUE" } }
    for _, e in ipairs(d.entries) do
      local ttl = ttl_of(e, d.now_ms)
      rows[#rows + 1] = { format.quote_bytes(e.key), e.type, tostring(e.size), format.int_string(e.flags),
                          ttl == nil and "-" or ttl == 0 and "expired" or sformat("%.3f", ttl),
                          value_text(e, opts.full) }
    end
    format.print_table(rows, { false, false, true, true, true, false })
    local s = d.stats
    report.emit(sformat("%d entr%s, %d bytes used, %d free (largest value %d), capacity %d; "
                   .. "evictions %d, expirations %d, contention %d, repairs %d%s\n",
                 s.entries, s.entries == 1 and "y" or "ies", s.used, s.free, s.largest, s.capacity,
                 s.evictions, s.expirations, s.contention, s.repairs,
                 d.consistent and "" or " (writers kept changing it: not a consistent snapshot)"))
  end
  report.flush_out()
  for _, p in ipairs(d.problems) do
    io.stderr:write(report.PROG, " dict: segment ", id, ": ", p,
                    d.consistent and "" or " (read while writers changed it: maybe a torn copy)", "\n")
  end
  return #d.problems > 0 and 1 or 0
end

return M
