--- System V semaphore sets, for the C programs (and Python's sysv_ipc, Perl's
-- IPC::Semaphore) that guard their shared memory with them.
--
--     local sem = require "sysvshm.sem"      -- also `require("sysvshm").sem`
--     local s = assert(sem.create(key, 1, { value = 1 }))   -- a mutex
--     s:with(0, function() ... end)          -- taken with SEM_UNDO
--     local t = sem.open(key)                -- another process
--     assert(t:acquire(0, 5))                -- or false, "timeout" after 5 s
--     t:release(0)
--
-- Semaphores are numbered from 0, as segment offsets are (`getall` and
-- `setall` take Lua sequences: item i + 1 is semaphore i). A handle
-- (`create`, `open`, `get`) has the fields `id` and `nsems`; it holds
-- nothing, so it needs no closing, and the set outlives every process until
-- `remove`d. `acquire`, `release` and `with` use SEM_UNDO: a process killed
-- while holding gives back what it took (the kernel undoes it at exit).
-- For a counting semaphore that one process raises and another lowers, use
-- `op` without SEM_UNDO. Blocking calls (`op`, `acquire`, `wait_zero`,
-- `with`, `semop`) take a timeout in seconds, return `false, "timeout"`
-- when it passes (`false, "would block"` for an operation with
-- IPC_NOWAIT), and Ctrl-C interrupts them, in the main thread as in a
-- coroutine. Misuse raises; a refusal of the system returns
-- `nil, message, errno`.
-- @module sysvshm.sem
local core = require "sysvshm.core"

local raw = core.sem
local methods = raw._methods

local M = {}
for k, v in pairs(raw) do
  if k ~= "_methods" then M[k] = v end
end

local pack, unpack = table.pack, table.unpack

--- Call fn(...) holding a semaphore: `acquire(num)` (waiting for ever,
-- with SEM_UNDO), then fn, then `release(num)`, also when fn raises (the
-- error is raised again). Returns what fn returns. A failure to acquire or
-- release (the set removed meanwhile) raises.
-- @function semset:with
-- @tparam[opt=0] integer num (may be left out: `s:with(fn, ...)`)
-- @tparam function fn
-- @param ... fn's arguments
-- @return fn's results
function methods.with(s, num, fn, ...)
  if type(num) == "function" then
    return methods.with(s, 0, num, fn, ...)
  end
  if type(fn) ~= "function" then
    error(("bad argument #2 to 'with' (function expected, got %s)"):format(type(fn)), 2)
  end
  local ok, msg = s:acquire(num)
  if not ok then
    -- "interrupted": lua.c's hook raises at once; anything else is a failure
    error("semaphore with: " .. tostring(msg), 2)
  end
  local r = pack(pcall(fn, ...))
  local rok, rmsg = s:release(num)
  if not r[1] then error(r[2], 0) end
  if not rok then error("semaphore with: " .. tostring(rmsg), 2) end
  return unpack(r, 2, r.n)
end

--- Constants: fields of the module (`sem.SEM_UNDO`, ...), with the
-- system's values.
-- @table constants
-- @field SEM_UNDO an operation's flag: the kernel undoes it at exit
-- @field IPC_NOWAIT an operation's flag: fail ("would block") instead of waiting
-- @field IPC_PRIVATE the key of a new private set
-- @field IPC_CREAT create (semget flag)
-- @field IPC_EXCL fail if the key exists (semget flag)
-- @field IPC_RMID remove (semctl command)
-- @field IPC_SET set uid, gid, mode (semctl command)
-- @field IPC_STAT status (semctl command)
-- @field IPC_INFO system limits (semctl command)
-- @field SEM_INFO system limits and usage (semctl command)
-- @field SEM_STAT status by kernel index (semctl command)
-- @field SEM_STAT_ANY as SEM_STAT, without the read check (Linux 4.17)
-- @field GETVAL a semaphore's value (semctl command)
-- @field SETVAL set a value (semctl command)
-- @field GETALL every value (semctl command)
-- @field SETALL set every value (semctl command)
-- @field GETPID the last operating process (semctl command)
-- @field GETNCNT how many wait for an increase (semctl command)
-- @field GETZCNT how many wait for zero (semctl command)
-- @field EACCES errno
-- @field EAGAIN errno
-- @field EEXIST errno
-- @field EFBIG errno (a semaphore number past the set)
-- @field EIDRM errno (the set was removed)
-- @field EINVAL errno
-- @field ENOENT errno
-- @field ENOSPC errno
-- @field EPERM errno
-- @field ERANGE errno (a value past SEMVMX)

return M
