--- Segments and semaphore sets for the `sysvshm` commands: look them up or
-- fail with a message that says what is missing, the fields of their JSON
-- lines, and what a segment holds.
-- @module sysvshm.cli.ipc
local shm = require "sysvshm"
local sem = require "sysvshm.sem"
local report = require "sysvshm.cli.report"
local format = require "sysvshm.cli.format"

local fail = report.fail
local key_string = format.key_string

local M = {}

local sformat = string.format

-- The message of a failed call on segment id, with a hint for the errno
-- values that mean "no such segment".
local function about(id, msg, errno)
  if errno == shm.EINVAL or errno == shm.EIDRM then
    return sformat("no segment with id %d (%s)", id, msg)
  end
  return sformat("segment %d: %s", id, msg)
end

local function stat_or_fail(id)
  local st, msg, errno = shm.stat(id)
  if not st then
    fail("%s", about(id, msg, errno))
  end
  return st
end

local function open_key_or_fail(key)
  local id, msg, errno = shm.open(key)
  if not id then
    if errno == shm.ENOENT then
      fail("no segment with key %s (%s)", key_string(key), msg)
    end
    fail("key %s: %s", key_string(key), msg)
  end
  return id
end

local function attach_ro(id)
  local seg, msg, errno = shm.attach(id, { readonly = true })
  if not seg then
    fail("%s", about(id, msg, errno))
  end
  return seg
end

local function list_or_fail()
  local list, msg = shm.list()
  if not list then
    fail("cannot list the segments: %s", msg)
  end
  return list
end

-- The same for semaphore sets (their ids are a namespace of their own).
local function sem_about(id, msg, errno)
  if errno == shm.EINVAL or errno == shm.EIDRM then
    return sformat("no semaphore set with id %d (%s)", id, msg)
  end
  return sformat("semaphore set %d: %s", id, msg)
end

local function sem_stat_or_fail(id)
  local st, msg, errno = sem.semctl(id, 0, sem.IPC_STAT)
  if not st then
    fail("%s", sem_about(id, msg, errno))
  end
  return st
end

local function sem_open_key_or_fail(key)
  local id, msg, errno = sem.semget(key, 0, 0)
  if not id then
    if errno == shm.ENOENT then
      fail("no semaphore set with key %s (%s)", key_string(key), msg)
    end
    fail("key %s: %s", key_string(key), msg)
  end
  return id
end

local function sem_list_or_fail()
  local list, msg = sem.list()
  if not list then
    fail("cannot list the semaphore sets: %s", msg)
  end
  return list
end


-- ---- the stat fields ------------------------------------------------------------------

--- The fields of a segment, in the order of the JSON output.
-- That is, of `ls --json` and `stat --json`: `id`, then those of `shm.stat`.
M.FIELDS = { "id", "key", "size", "mode", "uid", "gid", "cuid", "cgid", "cpid", "lpid",
             "nattch", "atime", "dtime", "ctime", "removed", "locked", "holds", "holds_version" }

--- The fields of a semaphore set's JSON line (`ls --json`, `stat --sem
-- --json`): `type` ("sem"), `id`, then those of `semset:stat`.
M.SEM_FIELDS = { "type", "id", "key", "nsems", "mode", "uid", "gid", "cuid", "cgid", "otime", "ctime" }

-- ---- what a segment holds ---------------------------------------------------------

-- What the first bytes of a region say it holds (sysvshm.dict's "SVDI",
-- sysvshm.channel's "SVCH", native u32 magic then u32 layout version).
local MAGICS = { [0x49445653] = "dict", [0x48435653] = "channel" }

local function holds(seg, off)
  if #seg < 8 or off > #seg - 8 then
    return nil
  end
  local magic, version = seg:unpack("=I4 I4", off)
  local what = MAGICS[magic]
  return what, what and version
end

-- Sleep the whole interval even when a harmless signal cuts it short
-- (after Ctrl-C, lua5.4 raises "interrupted!" as soon as shm.sleep returns).
local function sleep(seconds)
  local done, left = shm.sleep(seconds)
  while not done do
    done, left = shm.sleep(left)
  end
end

M.about, M.stat_or_fail, M.open_key_or_fail, M.attach_ro, M.list_or_fail = about, stat_or_fail,
  open_key_or_fail, attach_ro, list_or_fail
M.sem_about, M.sem_stat_or_fail, M.sem_open_key_or_fail, M.sem_list_or_fail = sem_about, sem_stat_or_fail,
  sem_open_key_or_fail, sem_list_or_fail
M.holds, M.sleep = holds, sleep

return M
