--- System V shared memory for Lua 5.4.
-- The functions of the C core (`sysvshm.core`), plus the helpers written in
-- Lua. Offsets are 0-based byte offsets. Misuse raises an error; a refusal
-- of the system returns `nil, message, errno`.
-- @module sysvshm
local core = require "sysvshm.core"

-- The documented functions and constants of the core; the rest of it
-- (channel_new, dict_open, CHANNEL_HEADER, ...) is for the Lua modules
-- that wrap it (sysvshm.channel, sysvshm.dict, sysvshm.sem).
local API = {
  "ftok", "create", "private", "open", "attach", "stat", "remove", "list",
  "type", "mutex", "clock", "sleep", "shmget", "shmat", "shmdt", "shmctl",
  "IPC_PRIVATE", "IPC_CREAT", "IPC_EXCL", "IPC_NOWAIT", "IPC_RMID", "IPC_SET",
  "IPC_STAT", "SHM_RDONLY", "SHM_RND", "SHM_LOCK", "SHM_UNLOCK", "EACCES",
  "EEXIST", "EIDRM", "EINVAL", "ENOENT", "ENOMEM", "ENOSPC", "EPERM",
  "MUTEX_SIZE", "MUTEX_ALIGN", "_VERSION",
}

local M = {}
for _, k in ipairs(API) do
  M[k] = core[k]
end

--- System V semaphore sets: the module `sysvshm.sem` (the same table).
-- @field sem
M.sem = require "sysvshm.sem"

--- Constants: fields of the module itself (`shm.IPC_PRIVATE`, ...), with
-- the system's values, for `shmget`, `shmat` and `shmctl` flags and
-- commands, and for comparing the errno that a refusal returns.
-- @table constants
-- @field IPC_PRIVATE the key of a new private segment
-- @field IPC_CREAT create (shmget flag)
-- @field IPC_EXCL fail if the key exists (shmget flag)
-- @field IPC_NOWAIT (for completeness: no shm call uses it)
-- @field IPC_RMID mark for removal (shmctl command)
-- @field IPC_SET set uid, gid, mode (shmctl command)
-- @field IPC_STAT status (shmctl command)
-- @field SHM_RDONLY attach read-only (shmat flag)
-- @field SHM_RND round the address down (shmat flag)
-- @field SHM_LOCK lock in memory (shmctl command; Linux)
-- @field SHM_UNLOCK unlock (shmctl command; Linux)
-- @field EACCES errno
-- @field EEXIST errno
-- @field EIDRM errno
-- @field EINVAL errno
-- @field ENOENT errno
-- @field ENOMEM errno
-- @field ENOSPC errno
-- @field EPERM errno
-- @field MUTEX_SIZE bytes a mutex takes
-- @field MUTEX_ALIGN the alignment a mutex needs
-- @field _VERSION `"sysvshm "` and the version

return M
