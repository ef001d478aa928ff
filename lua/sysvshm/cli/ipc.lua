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

-- Segments and semaphore sets: ids of namespaces of their own, looked up
-- alike. What each is called, and its calls (looked up when called).
local SEGMENT = {
  noun = "segment", nouns = "segments",
  stat = function(id) return shm.stat(id) end,
  open = function(key) return shm.open(key) end,
  list = function() return shm.list() end,
}
local SEMSET = {
  noun = "semaphore set", nouns = "semaphore sets",
  stat = function(id) return sem.semctl(id, 0, sem.IPC_STAT) end,
  open = function(key) return sem.semget(key, 0, 0) end,
  list = function() return sem.list() end,
}

-- For one kind: `about(id, msg, errno)`, the message of a failed call on
-- id, with a hint for the errno values that mean "no such one"; and
-- stat_or_fail(id), open_key_or_fail(key), list_or_fail(): the result of
-- the call, or a failure with that message.
local function lookups(kind)
  local function about(id, msg, errno)
    if errno == shm.EINVAL or errno == shm.EIDRM then
      return sformat("no %s with id %d (%s)", kind.noun, id, msg)
    end
    return sformat("%s %d: %s", kind.noun, id, msg)
  end

  local function stat_or_fail(id)
    local st, msg, errno = kind.stat(id)
    if not st then
      fail("%s", about(id, msg, errno))
    end
    return st
  end

  local function open_key_or_fail(key)
    local id, msg, errno = kind.open(key)
    if not id then
      if errno == shm.ENOENT then
        fail("no %s with key %s (%s)", kind.noun, key_string(key), msg)
      end
      fail("key %s: %s", key_string(key), msg)
    end
    return id
  end

  local function list_or_fail()
    local list, msg = kind.list()
    if not list then
      fail("cannot list the %s: %s", kind.nouns, msg)
    end
    return list
  end

  return about, stat_or_fail, open_key_or_fail, list_or_fail
end

local about, stat_or_fail, open_key_or_fail, list_or_fail = lookups(SEGMENT)
local sem_about, sem_stat_or_fail, sem_open_key_or_fail, sem_list_or_fail = lookups(SEMSET)

local function attach_ro(id)
  local seg, msg, errno = shm.attach(id, { readonly = true })
  if not seg then
    fail("%s", about(id, msg, errno))
  end
  return seg
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
