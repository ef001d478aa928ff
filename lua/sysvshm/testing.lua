--- What a test suite needs to test its own shared-memory code: segments and
-- semaphore sets removed when the test ends, keys no other run is using,
-- child `lua5.4` processes that find the same modules, polling for what
-- another process makes true, and a leak check.
--
--     local testing = require "sysvshm.testing"
--
--     it("two processes share a counter", function()
--       local seg, id = testing.segment(64)       -- removed when the test ends
--       local child = testing.spawn([[
--         local shm = require "sysvshm"
--         local seg = assert(shm.attach(math.tointeger(tonumber((...)))))
--         seg:atomic_add(0, 1)
--         print("added")
--       ]], id)
--       child:expect("^added$", 10)
--       assert.is_true(child:wait(10))             -- exit status 0
--       assert.equal(1, seg:atomic_load(0))
--     end)                                          -- the child is reaped too
--
-- **Under busted** everything made through this module (`segment`,
-- `semset`, `spawn`, `defer`) belongs to the test that made it (in `it`,
-- `before_each` or `after_each`) and is removed, killed and reaped when
-- that test ends, pass or fail; made in `setup`, `lazy_setup` or the body
-- of a `describe`, it lasts until that block ends. This needs nothing from
-- the spec and leaves busted's single `finally` to the test. **Elsewhere**
-- (plain Lua, another framework) call `testing.cleanup()` yourself.
--
-- **Leaks**: `testing.leaks(mark)` lists the segments and semaphore sets
-- made since `testing.mark()` that still exist. The busted helper
-- `sysvshm.testing.busted` (put `helper = "sysvshm.testing.busted"` in
-- `.busted`) fails every test that leaves one behind, and runs the suite in
-- its own IPC namespace when the system allows it (see that module).
--
-- Children write their output (stdout and stderr joined) to a file that
-- the test reads, so nothing blocks without a timeout. Every blocking call
-- here takes a timeout in seconds and returns `false, "timeout"` when it
-- passes (`expect` raises, being an assertion).
-- @module sysvshm.testing
local shm = require "sysvshm"
local sem = require "sysvshm.sem"
local check_opts = require "sysvshm.checkopts"

local M = {}

--- Seconds `poll` and `eventually` wait by default.
M.TIMEOUT = 10

--- Seconds a child of `spawn` may live by default (then it is killed
-- with SIGKILL, even if this process died first).
M.CHILD_LIMIT = 60

--- The interpreter `spawn` runs by default.
M.LUA = "lua5.4"

-- ---- state -----------------------------------------------------------------

-- The state lives in the registry: busted's insulation unloads the modules a
-- spec file required, and a reloaded copy of this module must see (and not
-- subscribe twice for) what the previous one tracks.
local REG = "sysvshm.testing"
local state = debug.getregistry()[REG]
if not state then
  state = {
    owned = {},       -- owner -> list of cleanup entries
    subscribed = false,
    mark = nil,       -- the mark of the running test
    test = nil,       -- the name of the running test
    helper = false,   -- the busted helper is loaded
    seq = 0,
  }
  debug.getregistry()[REG] = state
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end
M.quote = quote

-- The busted API table when this runs inside busted, else nil.
local function busted_api()
  local b = package.loaded.busted
  if type(b) == "table" and type(b.subscribe) == "function" then return b end
  return nil
end

-- Who owns what is made now: "test" in a test (or its before_each,
-- after_each, finally), a describe/file element in the body or setup of a
-- block, "manual" outside busted.  Found from the innermost busted.safe
-- frame on the stack (busted 2: safe(descriptor, run, element)).
local TEST_PARTS = { it = true, before_each = true, after_each = true, finally = true, test = true,
                     pending = true }

local function owner()
  local api = busted_api()
  if not api then return "manual" end
  for level = 3, 250 do
    local info = debug.getinfo(level, "S")
    if not info then break end
    if info.source:match("busted[/\\]core%.lua$") then
      local name, descriptor = debug.getlocal(level, 1)
      local ename, element = debug.getlocal(level, 3)
      if name == "descriptor" and ename == "element" and type(element) == "table" then
        if TEST_PARTS[descriptor] then return "test" end
        if descriptor == "describe" or descriptor == "file" then return element end
        return api.parent(element) or "manual" -- setup, lazy_setup, ...
      end
    end
  end
  return "manual"
end

local function own(entry)
  local who = owner()
  local list = state.owned[who]
  if not list then
    list = {}
    state.owned[who] = list
  end
  list[#list + 1] = entry
  return entry
end

-- Run the cleanups of one owner, last made first; never raises.
local function release(who)
  local list = state.owned[who]
  if not list then return end
  state.owned[who] = nil
  for i = #list, 1, -1 do
    pcall(list[i].fn)
  end
end

local subscribe -- below

--- Remove, kill and reap what was made through this module, last made
-- first. Never raises. Outside busted that is everything made so far:
-- call it yourself. Under busted it happens by itself when each test
-- ends (and, for what a `setup` or a `describe` body made, when that block
-- ends); calling it there cleans up what the running test made.
function M.cleanup()
  subscribe()
  release("test")
  release("manual")
end

--- Run fn() when the current test ends, pass or fail (any number of
-- them, last registered first, unlike busted's single `finally`); outside
-- busted, at `cleanup`. An error in fn is ignored.
-- @tparam function fn
function M.defer(fn)
  subscribe()
  assert(type(fn) == "function", "defer: function expected")
  own({ fn = fn })
end

-- ---- segments, semaphore sets, keys -------------------------------------------

-- ids made through this module that are not cleaned up yet: leaks() leaves
-- them out (they will go when the test ends)
local pending_shm, pending_sem = {}, {}

--- A new segment, attached read-write, removed (and detached) when the
-- current test ends.
-- @tparam integer size in bytes
-- @tparam[opt] table opts `key` (default IPC_PRIVATE; a key is created
-- exclusively: an existing segment with that key is an error), `mode`
-- (default 0600)
-- @treturn segment the attachment
-- @treturn integer its id
-- @raise when the system refuses (the message of shm.create or shm.attach)
function M.segment(size, opts)
  check_opts(opts, { key = true, mode = true }, 2, "segment")
  subscribe()
  opts = opts or {}
  local key = opts.key or shm.IPC_PRIVATE
  local id, msg = shm.create(key, size, { mode = opts.mode, exclusive = key ~= shm.IPC_PRIVATE })
  if not id then error("testing.segment: " .. tostring(msg), 2) end
  pending_shm[id] = true
  local segs = setmetatable({}, { __mode = "k" }) -- a collected handle detaches itself
  own({ fn = function()
    for s in pairs(segs) do pcall(s.detach, s) end
    shm.remove(id)
    pending_shm[id] = nil
  end })
  local seg, amsg = shm.attach(id)
  if not seg then error("testing.segment: " .. tostring(amsg), 2) end
  segs[seg] = true
  return seg, id
end

--- Remove the segment `id` when the current test ends (one made some
-- other way: by the code under test, `shm.create`).
-- @tparam integer id
-- @treturn integer id
function M.remove_later(id)
  subscribe()
  assert(math.type(id) == "integer", "remove_later: integer id expected")
  pending_shm[id] = true
  own({ fn = function() shm.remove(id); pending_shm[id] = nil end })
  return id
end

--- A new semaphore set (`sem.create`), removed when the current test ends.
-- @tparam integer nsems
-- @tparam[opt] table opts as `sem.create` takes, plus `key` (default
-- IPC_PRIVATE; a key is created exclusively)
-- @treturn semset
-- @raise when the system refuses
function M.semset(nsems, opts)
  subscribe()
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local key = o.key or sem.IPC_PRIVATE
  o.key = nil
  if key ~= sem.IPC_PRIVATE then o.exclusive = true end
  local s, msg = sem.create(key, nsems, o)
  if not s then error("testing.semset: " .. tostring(msg), 2) end
  local id = s.id
  pending_sem[id] = true
  own({ fn = function() pcall(s.remove, s); pending_sem[id] = nil end })
  return s
end

local function random_bytes(n)
  local f = io.open("/dev/urandom", "rb")
  local s = f and f:read(n)
  if f then f:close() end
  return s
end

local seeded = false

--- A key that no segment and no semaphore set on this machine (in this IPC
-- namespace) has: random, checked for absence. Another run could still
-- take it between this check and your create, so create with `exclusive`
-- (as `segment` and `semset` do) and take another key on EEXIST.
-- @treturn integer a positive key
function M.key()
  if not seeded then
    local b = random_bytes(4)
    math.randomseed(b and (string.unpack("<I4", b)) or os.time(), math.floor(os.clock() * 1e6))
    seeded = true
  end
  local used = {}
  for _, list in ipairs({ (shm.list()) or {}, (sem.list()) or {} }) do
    for _, st in ipairs(list) do used[st.key] = true end
  end
  for _ = 1, 1000 do
    local k = math.random(0x1000, 0x7fffffff)
    if not used[k] then return k end
  end
  error("testing.key: no free key found") -- 1000 draws out of 2^31
end

-- ---- marks and leaks -----------------------------------------------------------

--- What exists now: a mark for `leaks`.
-- @treturn table a mark
-- @raise when the system does not list segments or semaphore sets
function M.mark()
  local m = { shm = {}, sem = {} }
  local segs = assert(shm.list())
  local sets = assert(sem.list())
  for _, st in ipairs(segs) do m.shm[st.id] = true end
  for _, st in ipairs(sets) do m.sem[st.id] = true end
  return m
end

--- The segments and semaphore sets made since `mark` (by any process on
-- this machine, in this IPC namespace) that still exist, leaving out those
-- made through this module and not cleaned up yet (they go when the test
-- ends) and segments already marked for removal (they go when their last
-- process detaches). Each is the table `shm.list` or `sem.list` gives,
-- plus `kind` ("segment" or "semset"). So `assert.same({}, testing.leaks(m))`.
-- @tparam[opt] table mark from `mark`; default the mark taken when the
-- running test started (under busted)
-- @treturn table a list, empty when nothing was left behind
function M.leaks(mark)
  subscribe()
  mark = mark or state.mark
  if not mark then error("testing.leaks: no mark (call testing.mark() first)", 2) end
  local out = {}
  for _, st in ipairs(assert(shm.list())) do
    if not mark.shm[st.id] and not pending_shm[st.id] and not st.removed then
      st.kind = "segment"
      out[#out + 1] = st
    end
  end
  for _, st in ipairs(assert(sem.list())) do
    if not mark.sem[st.id] and not pending_sem[st.id] then
      st.kind = "semset"
      out[#out + 1] = st
    end
  end
  return out
end

--- One line per leak (from `leaks`), for messages.
-- @tparam table list
-- @treturn string
function M.describe_leaks(list)
  local t = {}
  for _, st in ipairs(list) do
    if st.kind == "segment" then
      t[#t + 1] = ("segment id=%d key=0x%08x size=%d nattch=%d cpid=%d"):format(
        st.id, st.key & 0xffffffff, st.size, st.nattch, st.cpid)
    else
      t[#t + 1] = ("semaphore set id=%d key=0x%08x nsems=%d"):format(st.id, st.key & 0xffffffff, st.nsems)
    end
  end
  return table.concat(t, "\n")
end

--- Remove what `leaks` listed; returns how many went.
-- @tparam table list
-- @treturn integer
function M.remove_leaks(list)
  local n = 0
  for _, st in ipairs(list) do
    local ok
    if st.kind == "segment" then ok = shm.remove(st.id) else ok = sem.semctl(st.id, 0, sem.IPC_RMID) end
    if ok then n = n + 1 end
  end
  return n
end

-- ---- waiting ---------------------------------------------------------------------

--- Call pred() until it returns a true value or `timeout` seconds pass,
-- sleeping a little (1 ms, growing to 20 ms) between calls.
-- @tparam function pred
-- @tparam[opt=TIMEOUT] number timeout seconds
-- @return pred's true value, or its last (false) value after the timeout
function M.poll(pred, timeout)
  local deadline = shm.clock() + (timeout or M.TIMEOUT)
  local pause = 0.001
  while true do
    local v = pred()
    if v then return v end
    if shm.clock() > deadline then return v end
    shm.sleep(pause)
    pause = math.min(pause * 2, 0.02)
  end
end

--- Call fn() until it returns without raising (assertions inside it
-- pass) or `timeout` seconds pass; then raise its last error as it was
-- (a failed assertion stays a failure).
-- @tparam function fn
-- @tparam[opt=TIMEOUT] number timeout seconds
-- @return what fn returned
function M.eventually(fn, timeout)
  local last
  local r = M.poll(function()
    local res = table.pack(pcall(fn))
    if res[1] then return res end
    last = res[2]
    return false
  end, timeout)
  if r then return table.unpack(r, 2, r.n) end
  error(last, 0)
end

-- ---- children -------------------------------------------------------------------

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function cwd()
  local p = io.popen("pwd -P")
  local d = p and p:read("l")
  if p then p:close() end
  return d
end

local VERSION = _VERSION:match("%d+%.%d+"):gsub("%.", "_")

-- Entries of a search path made absolute against dir ("./x" and "x").
local function absolute(path, dir)
  local t = {}
  for entry in (path .. ";"):gmatch("([^;]*);") do
    if entry ~= "" and not entry:match("^/") then
      entry = dir .. "/" .. entry:gsub("^%./", "")
    end
    t[#t + 1] = entry
  end
  return table.concat(t, ";")
end

local function literal(v)
  local t = type(v)
  if t == "number" or t == "string" or t == "boolean" then return tostring(v) end
  error("spawn: cannot pass a " .. t .. " to a child process", 3)
end

local Child = {}
Child.__index = Child
M.Child = Child

-- The first statement of every child: write its pid where the parent reads it.
local PRELUDE = "do local f = io.open('/proc/self/stat') local p = f:read('n') f:close() "
  .. "f = io.open(%q, 'w') f:write(p) f:close() end"

--- Start a child `lua5.4` process running `code` (a chunk) or a file, at
-- once, alongside the test. It finds the same modules as this process
-- (package.path and package.cpath passed on as LUA_PATH_5_4 and
-- LUA_CPATH_5_4, made absolute if `cwd` is given; LUA_INIT unset), gets the
-- arguments as strings in `...` and `arg`, has /dev/null as its stdin and
-- writes its stdout and stderr to one file. It is killed (with its process
-- group) and reaped when the test ends, and killed after `limit` seconds
-- in any case (`timeout -s KILL`), so a lost child cannot outlive the run
-- by long.
--
-- `testing.spawn(code_or_file, ...)` runs a file when the string names an
-- existing file and holds no newline, else a chunk;
-- `testing.spawn{code = ..., file = ..., args = {...}, limit = 60,
-- lua = "lua5.4", cwd = dir, env = {NAME = value}, path = ..., cpath = ...}`
-- says everything.
-- @param code_or_file a chunk, a file name, or a table of options
-- @param ... arguments (strings, numbers, booleans)
-- @treturn Child
function M.spawn(code_or_file, ...)
  subscribe()
  local o
  if type(code_or_file) == "table" then
    o = code_or_file
    check_opts(o, { code = true, file = true, args = true, limit = true, lua = true, cwd = true,
                    env = true, path = true, cpath = true }, 1, "spawn")
  else
    assert(type(code_or_file) == "string", "spawn: code, file name or options expected")
    o = { args = table.pack(...) }
    local f = not code_or_file:find("\n") and io.open(code_or_file, "r")
    if f then
      f:close()
      o.file = code_or_file
    else
      o.code = code_or_file
    end
  end
  local args = o.args or {}
  local base = os.tmpname() -- exists (mkstemp): ours
  state.seq = state.seq + 1
  local child = setmetatable({
    base = base, outfile = base .. ".out", pidfile = base .. ".pid", statusfile = base .. ".status",
    out = {}, pos = 0, buf = "", readpos = 0, n = state.seq,
  }, Child)
  local file = o.file
  if o.code then
    file = base .. ".lua"
    local f = assert(io.open(file, "w"))
    f:write(o.code)
    f:close()
  end
  assert(file, "spawn: neither code nor file")
  local here = cwd() or "."
  local path, cpath = o.path or package.path, o.cpath or package.cpath
  if o.cwd then
    path, cpath = absolute(path, here), absolute(cpath, here)
    if not file:match("^/") then file = here .. "/" .. file end
  end
  local lits = {}
  for i = 1, (args.n or #args) do lits[i] = quote(literal(args[i])) end
  local env = { "env -u LUA_INIT -u LUA_INIT_" .. VERSION,
                "LUA_PATH_" .. VERSION .. "=" .. quote(path),
                "LUA_CPATH_" .. VERSION .. "=" .. quote(cpath) }
  for k, v in pairs(o.env or {}) do
    assert(tostring(k):match("^[%a_][%w_]*$"), "spawn: bad environment variable name")
    env[#env + 1] = k .. "=" .. quote(v)
  end
  -- sh: timeout (a process group of its own, with the interpreter) in the
  -- background, its pid to us, its status to a file when it ends
  local inner = ("timeout -s KILL %d %s -e %s %s %s >%s 2>&1 </dev/null & echo $!; wait $!; echo $? >%s"):format(
    o.limit or M.CHILD_LIMIT, o.lua or M.LUA, quote(PRELUDE:format(child.pidfile)), quote(file),
    table.concat(lits, " "), quote(child.outfile), quote(child.statusfile))
  -- (the shell's own stderr, where it reports a job killed by a signal, is
  -- dropped: the child's goes to the output file)
  local cmd = ("cd %s && exec %s sh -c %s 2>/dev/null"):format(quote(o.cwd or here), table.concat(env, " "),
    quote(inner))
  child.fh = assert(io.popen(cmd, "r"))
  child.tpid = math.tointeger(tonumber(child.fh:read("l")))
  child.file = file
  own({ fn = function() child:_reap() end })
  return child
end

local function wait_for(pred, timeout)
  if timeout == nil then timeout = math.huge end
  return M.poll(pred, timeout)
end

-- Has the child ended (the wrapper wrote its status)?
function Child:_ended()
  if self.status then return true end
  local s = slurp(self.statusfile)
  if s and s:match("\n$") then
    self.status = math.tointeger(tonumber(s))
    return true
  end
  return false
end

-- Read what the output file has beyond what was read; returns whether it grew.
function Child:_read()
  local f = io.open(self.outfile, "rb")
  if not f then return false end
  f:seek("set", self.readpos)
  local s = f:read("a")
  f:close()
  if not s or s == "" then return false end
  self.readpos = self.readpos + #s
  self.buf = self.buf .. s
  for l in self.buf:gmatch("([^\n]*)\n") do self.out[#self.out + 1] = l end
  self.buf = self.buf:match("[^\n]*$")
  return true
end

--- The pid of the interpreter (waits until it has started, at most 10 s).
-- @treturn integer|nil the pid, or nil if it never started
function Child:pid_now()
  if self.pid then return self.pid end
  wait_for(function()
    local s = slurp(self.pidfile)
    self.pid = s and math.tointeger(tonumber(s)) or nil
    return self.pid or self:_ended()
  end, 10)
  return self.pid
end

--- The next line of output (without its newline); the last line even if
-- it has no newline once the child has ended; nil at the end.
-- @tparam[opt] number timeout seconds (default: until the child ends)
-- @treturn[1] string|nil the line, or nil at the end of the output
-- @treturn[2] boolean false
-- @treturn[2] string "timeout"
function Child:line(timeout)
  local got = wait_for(function()
    if self.out[self.pos + 1] then return true end
    local ended = self:_ended() -- before reading: nothing comes after the status
    if self:_read() and self.out[self.pos + 1] then return true end
    if ended then
      if self.buf ~= "" then
        self.out[#self.out + 1] = self.buf
        self.buf = ""
        return true
      end
      return "end"
    end
    return false
  end, timeout)
  if not got then return false, "timeout" end
  if got == "end" then return nil end
  self.pos = self.pos + 1
  return self.out[self.pos]
end

--- Read lines until one matches `pattern`; returns its captures (or the
-- line). Raises, with the output so far, when the output ends or the
-- timeout passes first.
-- @tparam string pattern a Lua pattern
-- @tparam[opt] number timeout seconds (default: until the child ends)
-- @return the captures
function Child:expect(pattern, timeout)
  local deadline = timeout and shm.clock() + timeout
  while true do
    local l, why = self:line(deadline and math.max(0, deadline - shm.clock()))
    if l == nil or l == false then
      error(("child %s without a line matching %q; output:\n%s"):format(
        why == "timeout" and "timed out" or "ended", pattern, self:output()), 2)
    end
    if l:match(pattern) then return l:match(pattern) end
  end
end

--- Everything the child printed so far, lines joined by newlines.
-- @treturn string
function Child:output()
  self:_read()
  local s = table.concat(self.out, "\n")
  if self.buf ~= "" then s = s .. (s ~= "" and "\n" or "") .. self.buf end
  return s
end

--- Send a signal to the interpreter (it runs on after a signal it
-- handles; `wait` for it).
-- @tparam[opt="KILL"] string|integer sig a name ("TERM", "INT") or number
-- @treturn boolean whether the signal found the process
function Child:kill(sig)
  sig = sig or "KILL"
  assert(tostring(sig):match("^%w+$"), "kill: bad signal")
  local pid = self:pid_now()
  if not pid or self:_ended() then return false end
  return os.execute(("kill -%s %d 2>/dev/null"):format(sig, pid)) == true
end

--- Wait for the child to end; also reaps it.
-- @tparam[opt] number timeout seconds (default: until it ends, at most
-- its `limit`)
-- @treturn[1] boolean|nil true when it exited with status 0, else nil (as
-- os.execute)
-- @treturn[1] string "exit", or "signal" for a status above 128 (the
-- shell's way of reporting a signal)
-- @treturn[1] integer the exit status or the signal number (also the
-- fields `ok`, `how` and `code` of the child)
-- @treturn[2] boolean false
-- @treturn[2] string "timeout"
function Child:wait(timeout)
  if not self.how then
    if not wait_for(function() return self:_ended() end, timeout) then return false, "timeout" end
    self:_read()
    if self.fh then
      pcall(self.fh.close, self.fh)
      self.fh = nil
    end
    local s = self.status or 255
    if s > 128 then self.how, self.code = "signal", s - 128 else self.how, self.code = "exit", s end
    self.ok = (s == 0) or nil
  end
  return self.ok, self.how, self.code
end

-- At the end of the test: kill the interpreter (timeout reaps it, the shell
-- reaps timeout, we reap the shell), then what is left of its process group
-- (processes it started), and delete the files.
function Child:_reap()
  if not self:_ended() then
    local pid = self.pid or math.tointeger(tonumber(slurp(self.pidfile) or ""))
    if pid then
      os.execute(("kill -KILL %d 2>/dev/null"):format(pid))
      wait_for(function() return self:_ended() end, 5)
    end
  end
  if self.tpid then os.execute(("kill -KILL -%d %d 2>/dev/null"):format(self.tpid, self.tpid)) end
  self:wait(10)
  for _, suffix in ipairs({ "", ".out", ".pid", ".status", ".lua" }) do os.remove(self.base .. suffix) end
end

-- ---- busted ---------------------------------------------------------------------

-- A test's full name ("describe it").
local function full_name(api, element)
  local t = {}
  while element and element.descriptor ~= "file" do
    if element.name then table.insert(t, 1, element.name) end
    element = api.parent(element)
  end
  return table.concat(t, " ")
end

function subscribe()
  if state.subscribed then return end
  local api = busted_api()
  if not api then return end
  state.subscribed = true
  api.subscribe({ "test", "start" }, function(element)
    state.test = full_name(api, element)
    if not state.helper then state.mark = M.mark() end
    return nil, true
  end)
  api.subscribe({ "test", "end" }, function()
    release("test")
    return nil, true
  end)
  local function block_end(element)
    release(element)
    return nil, true
  end
  api.subscribe({ "describe", "end" }, block_end)
  api.subscribe({ "file", "end" }, block_end)
end

-- for sysvshm.testing.busted
M._state = state
M._release = release

-- ---- luassert ------------------------------------------------------------------

--- Add `assert.segment_removed(id)` and `assert.no_leaks([mark])` to
-- luassert (done by itself when luassert is loaded, as under busted).
-- `segment_removed` passes when no segment has the id any more or it is
-- marked for removal; `no_leaks` when `leaks(mark)` is empty.
-- @treturn boolean whether luassert was there
function M.assertions()
  local ok, assert = pcall(require, "luassert")
  local ok2, say = pcall(require, "say")
  if not (ok and ok2) then return false end
  if state.asserted == assert then return true end
  state.asserted = assert
  say:set("assertion.segment_removed.positive", "Expected segment %s to be removed; it exists:\n%s")
  say:set("assertion.segment_removed.negative", "Expected segment %s to exist, not removed: %s")
  assert:register("assertion", "segment_removed", function(_, arguments)
    local id = arguments[1]
    local st, msg = shm.stat(id)
    if st and not st.removed then
      arguments[2] = ("key=0x%08x size=%d nattch=%d"):format(st.key & 0xffffffff, st.size, st.nattch)
      arguments.n = 2
      return false
    end
    arguments[2] = st and "it is marked for removal" or tostring(msg)
    arguments.n = 2
    return true
  end, "assertion.segment_removed.positive", "assertion.segment_removed.negative")
  say:set("assertion.no_leaks.positive", "Expected no System V IPC object left behind, found:\n%s")
  say:set("assertion.no_leaks.negative", "Expected an IPC object left behind, found none%s")
  assert:register("assertion", "no_leaks", function(_, arguments)
    local list = M.leaks(arguments[1])
    arguments[1] = M.describe_leaks(list)
    arguments.n = 1
    arguments.nofmt = { true }
    return #list == 0
  end, "assertion.no_leaks.positive", "assertion.no_leaks.negative")
  return true
end

if package.loaded.luassert then M.assertions() end
subscribe()

return M
