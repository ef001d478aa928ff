--- A busted helper that fails every test leaving a System V segment or
-- semaphore set behind, and runs the suite in its own IPC namespace when
-- the system allows it. In `.busted`:
--
--     return { default = { helper = "sysvshm.testing.busted" } }
--
-- (or `busted --helper=sysvshm.testing.busted`).
--
-- **Leaks.** Before each test (before the spec's own `before_each`) it
-- takes a `testing.mark()`; after it (after the spec's own `after_each`
-- and the cleanup of what `sysvshm.testing` made for the test) it lists
-- `testing.leaks(mark)`. Anything there fails the run with an error that
-- names the test and the objects, reported by busted as an error in
-- `after_each` (busted has no way for a helper to turn a passed test into
-- a failed one after the fact); the objects are then removed, so that one
-- leak does not break the next test or the next run. Segments already
-- marked for removal are not leaks (they go with their last process).
--
-- **Namespace.** Leaks are counted over every process of the machine's
-- IPC namespace: another program making a segment during a test would be
-- blamed on it, and two suites running at once could collide on keys. So,
-- when it loads, the helper starts busted again, with the same command
-- line, under `unshare --ipc` (a private, empty IPC namespace that goes
-- away with the suite) and exits with its status, if all of these hold:
--
-- * `SYSVSHM_TESTING_NS` is not `0` (`0`: never);
-- * this process is not already in an IPC namespace of its own (its
--   /proc/self/ns/ipc differs from pid 1's, as under `unshare --ipc make
--   test`; when pid 1's cannot be read, from the machine's initial one);
-- * `unshare --ipc true` works (root, or CAP_SYS_ADMIN).
--
-- With `SYSVSHM_TESTING_NS=user`, a user who is not root gets one too
-- through a user namespace (`unshare --ipc --user --map-current-user`,
-- where unprivileged user namespaces are enabled; inside it other users'
-- files look owned by nobody). Otherwise the suite runs where it is and
-- the helper says so on stderr, once. The re-run happens from busted's
-- current directory; a relative `-C`/`--directory` is resolved against
-- $PWD. Running it yourself is the same: `unshare --ipc busted`.
-- @module sysvshm.testing.busted
local testing = require "sysvshm.testing"
local busted = require "busted"

local state = testing._state

local function sh_ok(cmd)
  return os.execute(cmd .. " >/dev/null 2>&1") == true
end

local function readlink(path)
  local p = io.popen("readlink " .. testing.quote(path) .. " 2>/dev/null")
  local s = p and p:read("l")
  if p then p:close() end
  return s
end

-- This process's command line, as a shell command.
local function cmdline()
  local f = io.open("/proc/self/cmdline", "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local args, relative_dir = {}, false
  for a in s:gmatch("([^%z]*)%z") do
    args[#args + 1] = testing.quote(a)
    if a:match("^%-%-directory=[^/]") or a:match("^%-C[^/]") then relative_dir = true end
  end
  -- `-C dir` as two words
  for a in s:gmatch("%-C%z([^%z]*)%z") do
    if not a:match("^/") then relative_dir = true end
  end
  return table.concat(args, " "), relative_dir
end

local function reexec()
  local mode = os.getenv("SYSVSHM_TESTING_NS") or ""
  if mode == "0" or mode == "inside" then return end
  local mine, init = readlink("/proc/self/ns/ipc"), readlink("/proc/1/ns/ipc")
  -- pid 1's namespace may be unreadable (containers): then the initial
  -- namespace is the one with the kernel's fixed inode, PROC_IPC_INIT_INO
  init = init or "ipc:[4026531839]"
  if mine and mine ~= init then return end -- already in one of our own
  local unshare = "unshare --ipc"
  if mode == "user" then unshare = "unshare --ipc --user --map-current-user" end
  if not sh_ok(unshare .. " true") then
    io.stderr:write("sysvshm.testing.busted: no IPC namespace of its own (`" .. unshare
      .. "` is not allowed here); leaks of other processes would count\n")
    return
  end
  local cmd, relative_dir = cmdline()
  if not cmd then return end
  local cd = ""
  if relative_dir then
    local pwd = os.getenv("PWD")
    if pwd then cd = "cd " .. testing.quote(pwd) .. " && " end
  end
  io.stdout:flush()
  local ok, how, code = os.execute(cd .. "SYSVSHM_TESTING_NS=inside exec " .. unshare .. " " .. cmd)
  if how == "signal" then code = 128 + code end
  os.exit(ok and 0 or code or 1, true)
end

reexec()

state.helper = true

busted.before_each(function()
  state.mark = testing.mark()
end)

busted.after_each(function()
  testing._release("test")
  if not state.mark then return end
  local list = testing.leaks(state.mark)
  state.mark = nil
  if #list > 0 then
    local msg = ("%q left %d System V IPC object%s behind (removed now):\n%s"):format(
      state.test or "the test", #list, #list == 1 and "" or "s", testing.describe_leaks(list))
    testing.remove_leaks(list)
    error(msg, 0)
  end
end)

return testing
