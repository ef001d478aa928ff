--- Shared helpers for the busted specs.
--
--     local h = require "helpers"      -- .busted puts ./spec/?.lua on the path
--     local shm = h.shm                -- the module under test
--     after_each(h.cleanup)            -- removes whatever the test tracked
--
-- Everything a spec creates goes through `h.track*` (or the helpers that
-- call them) so that `h.cleanup` can detach and remove it even when the test
-- fails half way; busted's `finally` keeps only one handler per test, so a
-- list is used instead.
--
-- Child processes: `h.run_lua(code, args)` runs a chunk under a fresh
-- `lua5.4` that finds the in-tree module through LUA_PATH_5_4/LUA_CPATH_5_4
-- (set explicitly to absolute paths, never plain LUA_PATH/LUA_CPATH, which
-- the Lua 5.1 launcher of busted would read too); `h.run_lua_as_nobody`
-- does the same as user nobody through setpriv, after `h.nobody_ok()`
-- said it can.  `h.spawn(code, ...)` starts one that runs alongside the
-- test (several at once), killed by `h.cleanup` if still running: it is
-- sysvshm.testing's `spawn` (the public module, `h.testing`), with the
-- in-tree paths and the methods the specs were written against.
local M = {}

local shm = require "sysvshm"
local testing = require "sysvshm.testing"
M.shm = shm
M.testing = testing

-- ---- environment skips -----------------------------------------------------

--- The message of a test skipped for a reason of the environment (not
-- root, no pseudo-terminal, no C compiler, another user cannot read the
-- checkout, a big-endian machine): `pending(h.env(why))` then `return`.
-- Such a test has the tag `#env` in its name (`busted --tags=env` runs just
-- those). tools/busted_summary.sh counts the pending tests whose message
-- starts with "env: " and whose name has #env as environment skips, prints
-- their number, and fails the run on any other pending test: a known bug
-- is a failing test, never a pending one.
function M.env(why)
  return "env: " .. tostring(why)
end

-- ---- small utilities -------------------------------------------------------

--- Quote a string for /bin/sh.
function M.quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- Run a shell command; returns a table {ok, code, stdout, stderr}.
-- ok is true when the command exited with status 0; code is the exit status
-- (or the signal number when `how` is "signal").
function M.sh(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen("(" .. cmd .. ") 2>" .. M.quote(errfile), "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  local f = io.open(errfile, "rb")
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(errfile)
  return { ok = ok == true, how = how, code = code, stdout = out, stderr = err }
end

-- The directory of this file, made absolute, is <root>/spec.
local function find_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/[^/]*$") or "."
  local r = M.sh("cd " .. M.quote(dir .. "/..") .. " && pwd -P")
  assert(r.ok, "cannot find the repository root: " .. r.stderr)
  return (r.stdout:gsub("\n$", ""))
end

--- Absolute path of the repository root.
M.root = find_root()

--- The 5.4-only search paths for children: the in-tree Lua modules and the
-- in-tree build (tools/intree.lua), then (";;") Lua's defaults.
--- The build the children load (the directory holding sysvshm/core.so):
-- $SYSVSHM_BUILD_DIR when set to an absolute path (tools/check.sh points
-- it at its sanitizer and valgrind builds), otherwise the in-tree build.
do
  local path, cpath, build = dofile(M.root .. "/tools/intree.lua").paths(M.root)
  M.lua_path, M.lua_cpath, M.build_dir = path .. ";;", cpath .. ";;", build
end
do
  local dir = os.getenv("SYSVSHM_BUILD_DIR")
  if dir and dir:match("^/") then
    M.build_dir = (dir:gsub("/+$", ""))
    M.lua_cpath = M.build_dir .. "/?.so;;"
  end
end

--- The interpreter the children run.
M.lua = "lua5.4"

-- `env` with the in-tree paths set and no LUA_INIT.
local function lua_vars()
  return "env -u LUA_INIT -u LUA_INIT_5_4"
    .. " LUA_PATH_5_4=" .. M.quote(M.lua_path)
    .. " LUA_CPATH_5_4=" .. M.quote(M.lua_cpath) .. " "
end

--- A shell prefix that runs a command with the in-tree paths set (and no
-- LUA_INIT), from the repository root: `h.lua_env() .. "lua5.4 x.lua"`.
function M.lua_env()
  return "cd " .. M.quote(M.root) .. " && " .. lua_vars()
end

--- The pid of this (the test) process.
function M.pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local line = f:read("l")
  f:close()
  return math.tointeger(tonumber(line:match("^(%d+)")))
end

--- The real uid of this process (from /proc, so no child is involved).
function M.uid()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("a")
  f:close()
  return math.tointeger(tonumber(s:match("\nUid:%s+(%d+)")))
end

--- Call cond() until it returns a true value or `seconds` (default 10)
-- pass (`testing.poll`); returns its last value.
function M.poll(cond, seconds)
  return testing.poll(cond, seconds or 10)
end

--- As `poll`, but raises "timed out waiting for <what>" (with ": " and
-- info() appended when info is given) when cond() is still false after
-- `seconds` (default 10).  Returns cond()'s value.
function M.wait_until(cond, what, seconds, info)
  local v = M.poll(cond, seconds)
  if not v then
    error("timed out waiting for " .. what .. (info and (": " .. info()) or ""), 2)
  end
  return v
end

--- The message of the error f(...) raises, without its location; nil when
-- the call succeeds.
function M.errmsg(f, ...)
  local ok, e = pcall(f, ...)
  if ok then return nil end
  return (tostring(e):gsub("^[^\n]-:%d+: ", ""))
end

--- Argument errors that must name the caller's line, as Lua's own
-- functions' do: for each case `{fn, "#N to 'name' (message)"}`, where fn
-- is written on one line and calls what should raise without a tail call,
-- the error expected ("file:line: bad argument #N to ...", file the spec's
-- name) and the error raised, its location shortened to the file's name;
-- two lists, for assert.same.
function M.argerrors(file, cases)
  local want, got = {}, {}
  for i, c in ipairs(cases) do
    local ok, e = pcall(c[1])
    want[i] = ("%s:%d: bad argument %s"):format(file, debug.getinfo(c[1], "S").linedefined, c[2])
    got[i] = ok and "(no error)" or tostring(e):match("[^/]*$")
  end
  return want, got
end

-- ---- cleanup -------------------------------------------------------------

local ids = {}                                  -- segment ids to remove
local segs = setmetatable({}, { __mode = "k" }) -- attachments to detach (weak,
                                                -- so GC tests still work)
local files = {}                                -- temporary files to delete

--- Remember a segment id for removal by `cleanup`; returns id.
function M.track(id)
  if math.type(id) == "integer" then ids[#ids + 1] = id end
  return id
end

--- Remember an attachment for detaching by `cleanup`; returns seg.
function M.track_segment(seg)
  if seg ~= nil then segs[seg] = true end
  return seg
end

--- A new temporary file (empty, existing), deleted by `cleanup`.
function M.tmpfile()
  local name = os.tmpname()
  files[#files + 1] = name
  return name
end

--- Forget a tracked segment id and remove the segment now (a test that
-- removes its segment once every process has attached it); raises if the
-- removal fails.
function M.release(id)
  for i = #ids, 1, -1 do
    if ids[i] == id then table.remove(ids, i) end
  end
  assert(shm.remove(id))
end

--- Kill and reap the children still running (`h.spawn`, through
-- `testing.cleanup`, with whatever else sysvshm.testing made), detach every tracked
-- attachment, remove every tracked segment and delete the temporary files.
-- Never raises; use as `after_each(h.cleanup)`.
function M.cleanup()
  testing.cleanup()
  for seg in pairs(segs) do
    pcall(seg.detach, seg)
    segs[seg] = nil
  end
  for i = #ids, 1, -1 do
    pcall(shm.remove, ids[i])
    ids[i] = nil
  end
  for i = #files, 1, -1 do
    os.remove(files[i])
    files[i] = nil
  end
end

--- Create an IPC_PRIVATE segment (opts as shm.create) and track it.
-- Raises if creation fails.
function M.new_id(size, opts)
  local id, msg = shm.create(shm.IPC_PRIVATE, size or 64, opts)
  assert(id, msg)
  return M.track(id)
end

--- Attach (opts as shm.attach) and track the attachment. Raises on failure.
function M.attach(id, opts)
  local seg, msg = shm.attach(id, opts)
  assert(seg, msg)
  return M.track_segment(seg)
end

--- A tracked private segment, attached read-write: returns seg, id.
function M.new_segment(size, opts)
  local id = M.new_id(size, opts)
  return M.attach(id), id
end

--- A private segment, attached and already removed, so that it goes with
-- the last detach whatever happens (children attach it by id, which Linux
-- allows while it is attached): seg, id.
function M.new_removed_segment(size, opts)
  local seg, id = M.new_segment(size, opts)
  assert(shm.remove(id))
  return seg, id
end

--- The line `ipcs -m` prints for a segment id, parsed: {key, shmid, owner,
-- perms, bytes, nattch, status} (perms as printed, e.g. "600"), or nil.
function M.ipcs(id)
  local r = M.sh("ipcs -m")
  assert(r.ok, "ipcs -m failed: " .. r.stderr)
  for line in r.stdout:gmatch("[^\n]+") do
    local key, shmid, owner, perms, bytes, nattch, status = line:match(
      "^(0x%x+)%s+(%d+)%s+(%S+)%s+(%d+)%s+(%d+)%s+(%d+)%s*(.-)%s*$")
    if shmid and tonumber(shmid) == id then
      return { key = key, shmid = tonumber(shmid), owner = owner, perms = perms,
               bytes = tonumber(bytes), nattch = tonumber(nattch),
               status = status }
    end
  end
  return nil
end

-- ---- values from the C headers ---------------------------------------------

local cvalues_cache = {}

--- Integer values of C expressions, read by compiling a small program with
-- `cc` (an independent view of the system headers and libc). exprs: a list
-- whose entries are macro names ("IPC_CREAT") or {label, C expression}
-- pairs ({"key", 'ftok("/tmp", 65)'}); headers: list of headers to include.
-- Returns a table label -> integer, or nil and a reason when there is no
-- compiler (an environment skip); raises when the probe does not compile.
function M.c_values(exprs, headers)
  local src = { "#include <stdio.h>" }
  for _, hdr in ipairs(headers) do src[#src + 1] = "#include <" .. hdr .. ">" end
  src[#src + 1] = "int main(void) {"
  for _, e in ipairs(exprs) do
    local label, expr = e, e
    if type(e) == "table" then label, expr = e[1], e[2] end
    assert(label:match("^[%w_]+$"), "bad label " .. label)
    src[#src + 1] = ('  printf("%s %%lld\\n", (long long)(%s));'):format(label, expr)
  end
  local key = table.concat(src, "\n")
  if cvalues_cache[key] then return cvalues_cache[key] end
  src[#src + 1] = "  return 0;\n}\n"

  local r = M.sh("command -v cc")
  if not r.ok then return nil, "no C compiler (cc) found" end

  local dir = M.sh("mktemp -d")
  if not dir.ok then error("mktemp -d failed: " .. dir.stderr, 2) end
  dir = dir.stdout:gsub("\n$", "")
  local f = assert(io.open(dir .. "/values.c", "w"))
  f:write(table.concat(src, "\n"))
  f:close()

  local exe = M.quote(dir .. "/values")
  r = M.sh("cc -D_GNU_SOURCE -o " .. exe .. " " .. M.quote(dir .. "/values.c")
    .. " && " .. exe)
  M.sh("rm -rf " .. M.quote(dir))
  -- a probe that does not compile is a broken test, not the environment
  if not r.ok then error("cannot compile or run the header probe: " .. r.stderr .. "\n" .. key, 2) end

  local t = {}
  for n, v in r.stdout:gmatch("(%S+) (%-?%d+)") do t[n] = math.tointeger(tonumber(v)) end
  cvalues_cache[key] = t
  return t
end

-- ---- child processes -------------------------------------------------------

-- Lua source for a value passed to a child (nil, booleans, numbers, strings).
local function literal(v)
  local t = type(v)
  if t == "number" or t == "string" then return ("%q"):format(v) end
  if t == "nil" or t == "boolean" then return tostring(v) end
  error("cannot pass a " .. t .. " to a child process", 3)
end

-- The shell command that runs `code` with `args` under lua5.4; `prefix` goes
-- just before the interpreter (e.g. setpriv ...).
local function lua_command(code, args, prefix)
  args = args or {}
  local lits = {}
  for i = 1, (args.n or #args) do lits[i] = literal(args[i]) end
  local chunk = ("assert(load(%q, '=child'))(%s)"):format(code, table.concat(lits, ", "))
  return M.lua_env() .. (prefix or "") .. M.lua .. " -e " .. M.quote(chunk)
end

--- Run a Lua chunk in a new lua5.4 process that finds the in-tree build.
-- args: a list of plain values the chunk receives as `...`.
-- Returns {ok, code, stdout, stderr} as `h.sh`.
function M.run_lua(code, args)
  return M.sh(lua_command(code, args))
end

local NOBODY = "setpriv --reuid=nobody --regid=nogroup --clear-groups "

local nobody_status

--- Whether children can run as user nobody: true, or false and a reason
-- (not root, no setpriv, or the checkout not readable by nobody).
function M.nobody_ok()
  if nobody_status then return table.unpack(nobody_status) end

  local why
  if M.uid() ~= 0 then
    why = "not running as root, cannot switch to user nobody"
  elseif not M.sh("command -v setpriv").ok then
    why = "setpriv not found"
  else
    local probe = M.sh(M.lua_env() .. NOBODY .. "sh -c "
      .. M.quote("test -r lua/sysvshm/init.lua && test -r "
        .. M.quote(M.build_dir .. "/sysvshm/core.so")))
    if not probe.ok then
      why = "the checkout " .. M.root .. " (its lua/ and " .. M.build_dir
        .. ") is not readable by user nobody; a permission test needs it to be"
    else
      local r = M.sh(lua_command('require "sysvshm"; io.write("ok")', nil, NOBODY))
      if r.stdout ~= "ok" then
        why = "user nobody cannot load the module: " .. r.stderr
      end
    end
  end
  nobody_status = { why == nil, why }
  return why == nil, why
end

--- As `run_lua`, as user nobody (group nogroup, no supplementary groups).
function M.run_lua_as_nobody(code, args)
  return M.sh(lua_command(code, args, NOBODY))
end

--- As `run_lua`, as another user and group (names or numbers), with no
-- supplementary groups: `h.run_lua_as("daemon", "daemon", code, args)`.
-- Check `h.user_ok(user, group)` first.
function M.run_lua_as(user, group, code, args)
  return M.sh(lua_command(code, args, "setpriv --reuid=" .. M.quote(user) .. " --regid="
    .. M.quote(group) .. " --clear-groups "))
end

local user_status = {}

--- Whether children can run as `user` (and `group`): true, or false and a
-- reason, as `nobody_ok`.
function M.user_ok(user, group)
  local key = user .. ":" .. group
  if user_status[key] then return table.unpack(user_status[key]) end
  local can, why = M.nobody_ok() -- root, setpriv, a readable checkout
  if can then
    local r = M.run_lua_as(user, group, 'require "sysvshm"; io.write("ok")')
    if r.stdout ~= "ok" then
      can, why = false, "user " .. user .. " cannot load the module: " .. r.stderr
    end
  end
  user_status[key] = { can, why }
  return can, why
end

-- ---- children running alongside the test ----------------------------------

-- sysvshm.testing starts them (the one implementation; its children write
-- to a file, so reading one never blocks past a timeout); these keep the
-- API the specs were written against.

--- Seconds a child of `h.spawn` may live before it is killed.
M.CHILD_LIMIT = 60

local Child = setmetatable({}, { __index = testing.Child })
Child.__index = Child

--- Start a Lua chunk at once in a new lua5.4 process that finds the in-tree
-- build, from the repository root (`testing.spawn` with this file's paths);
-- it gets the arguments as strings in `...` and `arg`; its stderr joins its
-- stdout.  A child that prints a line "pid N" first lets `waitpid` wait
-- for that line.  Returns a child: `testing.Child`'s methods, plus
-- `:fields(word)`, `:join()` (sets ok, how, code), `:said()`, `:waitpid()`,
-- and a `:kill()` that also joins.  Killed and reaped when the test ends.
function M.spawn(code, ...)
  return M.spawn_limited(M.CHILD_LIMIT, code, ...)
end

--- As `spawn`, killed (SIGKILL) after `limit` seconds instead.
function M.spawn_limited(limit, code, ...)
  local child = testing.spawn({ code = code, args = table.pack(...), limit = limit, cwd = M.root,
                                path = M.lua_path, cpath = M.lua_cpath, lua = M.lua })
  return setmetatable(child, Child)
end

--- The next line of output, or nil at the end (lines already read by
-- `join` are handed out again in order).  Notes the pid of a "pid N" line.
function Child:line(timeout)
  local l, why = testing.Child.line(self, timeout)
  if l then
    self.printed_pid = self.printed_pid or math.tointeger(tonumber(l:match("^pid (%d+)$")))
    self.pid = self.pid or self.printed_pid -- the same process as testing's
  end
  return l, why
end

--- The key=value pairs of a line, as a table (integers converted).
function M.kv(line)
  local t = {}
  for k, v in line:gmatch("(%w+)=(%S+)") do t[k] = math.tointeger(tonumber(v)) or v end
  return t
end

--- The key=value pairs (`h.kv`) of the child's next line starting with
-- `word`.
function Child:fields(word)
  return M.kv(self:expect("^" .. word .. " .*$"))
end

--- The child's pid, from its "pid N" line (read up to it).
function Child:waitpid()
  while not self.printed_pid and self:line() do end
  assert(self.printed_pid, "no pid from the child: " .. self:output())
  return self.printed_pid
end

--- Wait for the end; sets ok (true for exit status 0), how and code.
-- Returns self.
function Child:join()
  self:wait()
  self.ok = self.ok == true
  return self
end

--- What the child printed besides its "pid N" line, each line ending in a
-- newline (call after join).
function Child:said()
  local t = {}
  for _, l in ipairs(self.out) do
    if not l:match("^pid %d+$") then t[#t + 1] = l .. "\n" end
  end
  return table.concat(t)
end

--- Wait for a child to end: what it printed (`said`) and whether it exited
-- with 0, as `local out, ok = h.join(child)`.
function M.join(child)
  child:join()
  return child:said(), child.ok
end

--- SIGKILL the interpreter (it must have printed its pid) and reap it;
-- sets `killed`, and `sent` to whether the signal found the process.
-- Returns self.
function Child:kill()
  self:waitpid()
  self.sent = testing.Child.kill(self, "KILL")
  self.killed = true
  return self:join()
end

--- A one-line description of a child result, for assertion messages.
function M.explain(r)
  return ("exit %s %s; stdout: %q; stderr: %q"):format(
    tostring(r.how), tostring(r.code), r.stdout, r.stderr)
end

return M
