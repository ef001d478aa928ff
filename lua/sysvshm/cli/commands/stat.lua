-- `sysvshm stat`: every field of one segment or semaphore set.
local shm = require "sysvshm"
local sem = require "sysvshm.sem"
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"
local users = require "sysvshm.cli.users"
local args = require "sysvshm.cli.args"
local ipc = require "sysvshm.cli.ipc"

local M = {}

local sformat = string.format

-- A number and, when it has one, its name: "0 (root)", "1234".
local function who(v, name)
  return name == tostring(v) and tostring(v) or sformat("%d (%s)", v, name)
end

-- A time field of st: seconds, and as a date.
local function time_row(st, field)
  return { field, sformat("%d (%s)", st[field], format.time_string(st[field])) }
end

-- The rows of `stat` for a segment or a set: id, key, the row `sized`
-- (its size, its number of semaphores), mode and owners, then `rest`.
local function rows_of(id, st, sized, rest)
  local rows = {
    { "id", tostring(id) },
    { "key", format.key_string(st.key) .. (st.key == shm.IPC_PRIVATE and " (IPC_PRIVATE)" or "") },
    sized,
    { "mode", sformat("0%03o (%s)", st.mode, format.mode_string(st.mode)) },
    { "uid", who(st.uid, users.user_name(st.uid)) },
    { "gid", who(st.gid, users.group_name(st.gid)) },
    { "cuid", who(st.cuid, users.user_name(st.cuid)) },
    { "cgid", who(st.cgid, users.group_name(st.cgid)) },
  }
  return table.move(rest, 1, #rest, #rows + 1, rows)
end

-- `stat --sem`: every field of a semaphore set, and each semaphore's value,
-- last pid and waiters.
local function stat_sem(opts, parser)
  local id = opts[1] and args.parse_id(parser, opts[1]) or ipc.sem_open_key_or_fail(opts.key)
  local st = ipc.sem_stat_or_fail(id)
  st.id, st.type = id, "sem"
  local values, msg, errno = sem.semctl(id, 0, sem.GETALL)
  if not values then
    report.fail("%s", ipc.sem_about(id, msg, errno))
  end
  if opts.json then
    local fields = { table.unpack(ipc.SEM_FIELDS) }
    fields[#fields + 1] = "values"
    st.values = setmetatable(values, format.json_array)
    report.emit(format.json(st, fields), "\n")
    return 0
  end
  local rows = rows_of(id, st, { "nsems", tostring(st.nsems) }, {
    time_row(st, "otime"),
    time_row(st, "ctime"),
  })
  format.print_table(rows, {})
  rows = { { "SEMNUM", "VALUE", "PID", "NCNT", "ZCNT" } }
  for i, v in ipairs(values) do
    local pid = sem.semctl(id, i - 1, sem.GETPID)
    local ncnt = sem.semctl(id, i - 1, sem.GETNCNT)
    local zcnt = sem.semctl(id, i - 1, sem.GETZCNT)
    rows[#rows + 1] = { tostring(i - 1), tostring(v), tostring(pid or "?"), tostring(ncnt or "?"),
                        tostring(zcnt or "?") }
  end
  report.emit("\n")
  format.print_table(rows, { true, true, true, true, true })
  return 0
end

M.def = {
  summary = "show every field of one segment or semaphore set",
  args = "[ID]",
  max_args = 1,
  description = "Show every field of the segment with id ID (or with key K): the\n"
    .. "numbers of shm.stat, with names, sizes, permissions and times readable;\n"
    .. "and what it holds when its first bytes say so: a sysvshm.dict or a\n"
    .. "sysvshm.channel at offset 0 (field holds, and holds_version: its layout).\n"
    .. "With --sem, of the semaphore set with that id or key, and then each\n"
    .. "semaphore's value, last pid and waiters (for an increase, for zero).",
  epilog = "To look at the first bytes the segment is attached read-only for a\n"
    .. "moment, after the numbers are read (so they show the segment as it was;\n"
    .. "its atime, dtime and lpid change: --no-peek leaves them alone). Without\n"
    .. "read permission, no holds.",
  args.KEY_OPTION,
  { "no-peek", short = "n", type = "flag", help = "only the numbers: do not attach to see what it holds" },
  args.SEM_OPTION,
  { "json", short = "j", type = "flag", help = "one JSON object, as a line of ls --json" },
}

function M.run(opts, parser)
  if (opts[1] ~= nil) == (opts.key ~= nil) then
    report.usage_error(parser, opts[1] and "give a segment id or --key, not both" or "give a segment id or --key")
  end
  if opts.sem then
    return stat_sem(opts, parser)
  end
  local id = opts[1] and args.parse_id(parser, opts[1]) or ipc.open_key_or_fail(opts.key)
  local st = ipc.stat_or_fail(id)
  st.id = id
  -- Then a look at the first bytes (the numbers above are from before this
  -- attachment; without read permission there is no look).
  local seg <close> = not opts.no_peek and shm.attach(id, { readonly = true }) or nil
  if seg then
    st.holds, st.holds_version = ipc.holds(seg, 0)
    seg:detach()
  end
  if opts.json then
    report.emit(format.json(st, ipc.FIELDS), "\n")
    return 0
  end
  local rows = rows_of(id, st, { "size", sformat("%d (%s)", st.size, format.human_size(st.size)) }, {
    { "cpid", tostring(st.cpid) },
    { "lpid", tostring(st.lpid) },
    { "nattch", tostring(st.nattch) },
    time_row(st, "atime"),
    time_row(st, "dtime"),
    time_row(st, "ctime"),
    { "removed", tostring(st.removed) },
    { "locked", tostring(st.locked) },
  })
  if st.holds then
    rows[#rows + 1] = { "holds", sformat("a sysvshm.%s at offset 0 (layout version %d)%s", st.holds,
                                         st.holds_version, st.holds == "dict"
                                         and sformat(": sysvshm dict %d", id) or "") }
  end
  format.print_table(rows, {})
  return 0
end

return M
