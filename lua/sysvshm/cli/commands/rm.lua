-- `sysvshm rm`: remove segments or semaphore sets.
local shm = require "sysvshm"
local sem = require "sysvshm.sem"
local report = require "sysvshm.cli.report"
local users = require "sysvshm.cli.users"
local args = require "sysvshm.cli.args"
local ipc = require "sysvshm.cli.ipc"

local M = {}

local concat = table.concat

M.def = {
  summary = "remove segments or semaphore sets; prints how many went",
  args = "[ID...]",
  description = "Mark segments for removal (IPC_RMID): given by id, by key, or all of\n"
    .. "this user's segments that no process has attached. A segment goes once\n"
    .. "the last process detaches. Prints how many were removed (and their ids);\n"
    .. "the status is 1 when any could not be. With --sem, remove semaphore sets\n"
    .. "(by id or key) instead: at once, waking who waits on them with EIDRM.",
  args.KEY_OPTION,
  args.SEM_OPTION,
  { "mine-unattached", short = "u", type = "flag",
    help = "every segment this user owns or created with no attachment" },
  { "dry-run", short = "n", type = "flag", help = "only say what would be removed" },
}

function M.run(opts, parser)
  local forms = (#opts > 0 and 1 or 0) + (opts.key and 1 or 0) + (opts.mine_unattached and 1 or 0)
  if forms ~= 1 then
    report.usage_error(parser, "give segment ids, --key or --mine-unattached (%s)",
                forms == 0 and "none given" or "only one of them")
  end
  if opts.sem and opts.mine_unattached then
    report.usage_error(parser, "--mine-unattached is for segments only (a semaphore set has no attachments)")
  end
  local ids = {}
  if #opts > 0 then
    for i = 1, #opts do
      ids[i] = args.parse_id(parser, opts[i])
    end
  elseif opts.key then
    ids[1] = (opts.sem and ipc.sem_open_key_or_fail or ipc.open_key_or_fail)(opts.key)
  else
    local uid = users.euid()
    for _, st in ipairs(ipc.list_or_fail()) do
      if users.mine(st, uid) and st.nattch == 0 and not st.removed then
        ids[#ids + 1] = st.id
      end
    end
  end

  local gone, failed = {}, 0
  for _, id in ipairs(ids) do
    local ok, msg, errno
    if opts.mine_unattached then
      -- Look again just before: one attached since the listing stays.
      local st = shm.stat(id)
      ok = st and st.nattch == 0 and not st.removed
      if ok and not opts.dry_run then
        ok, msg, errno = shm.remove(id)
      end
    elseif opts.sem then
      ok, msg, errno = sem.semctl(id, 0, opts.dry_run and sem.IPC_STAT or sem.IPC_RMID)
    elseif opts.dry_run then
      ok, msg, errno = shm.stat(id)
    else
      ok, msg, errno = shm.remove(id)
    end
    if ok then
      gone[#gone + 1] = tostring(id)
    elseif msg then
      failed = failed + 1
      io.stderr:write(report.PROG, " rm: ", (opts.sem and ipc.sem_about or ipc.about)(id, msg, errno), "\n")
    end
  end
  local n = #gone
  local what = opts.sem and (n == 1 and " semaphore set" or " semaphore sets")
    or (n == 1 and " segment" or " segments")
  report.emit(opts.dry_run and "would remove " or "removed ", n, what,
                  n > 0 and ": " .. concat(gone, " ") or "", "\n")
  return failed > 0 and 1 or 0
end

return M
