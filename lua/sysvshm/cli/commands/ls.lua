-- `sysvshm ls`: the segments and semaphore sets, as ipcs shows them.
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"
local users = require "sysvshm.cli.users"
local ipc = require "sysvshm.cli.ipc"

local M = {}

M.def = {
  summary = "list segments and semaphore sets (like ipcs -m -s)",
  description = "List the shared memory segments this user can see: key, id, owner,\n"
    .. "permissions, size, attachments, creator and last pids, status (removed:\n"
    .. "marked for removal, it goes when the last process detaches); then, after\n"
    .. "a blank line, the semaphore sets: key, id, owner, permissions, number of\n"
    .. "semaphores, last operation and last change. --shm and --sem show one\n"
    .. "table only (as ipcs -m and ipcs -s).",
  epilog = "With --json, one JSON object per line and segment, with the fields of\n"
    .. "shm.stat and the id (times in seconds since the epoch, mode as an integer),\n"
    .. "then one per semaphore set, with \"type\":\"sem\", the id and the fields of\n"
    .. "semset:stat.",
  { "mine", short = "m", type = "flag", help = "only the segments and sets this user owns or created" },
  { "json", short = "j", type = "flag", help = "JSON lines instead of a table" },
  { "shm", type = "flag", help = "only the segments" },
  { "sem", type = "flag", help = "only the semaphore sets" },
}

function M.run(opts, parser)
  if opts.shm and opts.sem then
    report.usage_error(parser, "give --shm or --sem, not both")
  end
  local function only_mine(list)
    if not opts.mine then
      return list
    end
    local uid, kept = users.euid(), {}
    for _, st in ipairs(list) do
      if users.mine(st, uid) then
        kept[#kept + 1] = st
      end
    end
    return kept
  end
  local list = not opts.sem and only_mine(ipc.list_or_fail()) or {}
  local sets = not opts.shm and only_mine(ipc.sem_list_or_fail()) or {}
  if opts.json then
    local out = {}
    for _, st in ipairs(list) do
      out[#out + 1] = format.json(st, ipc.FIELDS)
    end
    for _, st in ipairs(sets) do
      st.type = "sem"
      out[#out + 1] = format.json(st, ipc.SEM_FIELDS)
    end
    report.emit_lines(out)
    return 0
  end
  if not opts.sem then
    local rows = { { "KEY", "ID", "OWNER", "MODE", "SIZE", "NATTCH", "CPID", "LPID", "STATUS" } }
    for _, st in ipairs(list) do
      rows[#rows + 1] = {
        format.key_string(st.key), tostring(st.id), users.user_name(st.uid), format.mode_string(st.mode),
        format.human_size(st.size), tostring(st.nattch), tostring(st.cpid), tostring(st.lpid),
        format.status_string(st),
      }
    end
    format.print_table(rows, { false, true, false, false, true, true, true, true, false })
  end
  if not opts.shm then
    if not opts.sem then
      report.emit("\n")
    end
    local rows = { { "KEY", "SEMID", "OWNER", "MODE", "NSEMS", "OTIME", "CTIME" } }
    for _, st in ipairs(sets) do
      rows[#rows + 1] = {
        format.key_string(st.key), tostring(st.id), users.user_name(st.uid), format.mode_string(st.mode),
        tostring(st.nsems), st.otime == 0 and "never" or format.time_string(st.otime), format.time_string(st.ctime),
      }
    end
    format.print_table(rows, { false, true, false, false, true, false, false })
  end
  return 0
end

return M
