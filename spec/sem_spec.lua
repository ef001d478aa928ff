-- System V semaphore sets (sysvshm.sem) and shm.private (issue 12):
-- every call and error path, checked through independent views (ipcs, a
-- second process, a C program compiled here), SEM_UNDO across SIGKILL,
-- Ctrl-C and other signals while blocked, permissions as user nobody, and
-- nothing left behind (`ipcs -s`, `ipcs -m`).
local h = require "helpers"
local shm = h.shm
local sem = require "sysvshm.sem"

local function oct(s) return math.tointeger(tonumber(s, 8)) end

-- Semaphore sets made here, removed by after_each (whatever happened).
local sets = {}
local function track(s, ...)
  if s then sets[#sets + 1] = s.id end
  return s, ...
end
local function new_set(nsems, opts)
  return track(assert(sem.create(sem.IPC_PRIVATE, nsems or 1, opts)))
end

local function ipcs_sem_ids()
  local r = h.sh("ipcs -s")
  assert(r.ok, r.stderr)
  local ids = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local key, id, owner, perms, nsems = line:match("^(0x%x+)%s+(%d+)%s+(%S+)%s+(%d+)%s+(%d+)")
    if id then ids[tonumber(id)] = { key = key, owner = owner, perms = perms, nsems = tonumber(nsems) } end
  end
  return ids
end

local before_sets

setup(function() before_sets = ipcs_sem_ids() end)

after_each(function()
  h.cleanup()
  for i = #sets, 1, -1 do
    sem.semctl(sets[i], 0, sem.IPC_RMID)
    sets[i] = nil
  end
end)

teardown(function()
  -- `ipcs -s` shows nothing this file made
  local left = {}
  for id in pairs(ipcs_sem_ids()) do
    if not before_sets[id] then left[#left + 1] = id end
  end
  assert.same({}, left)
end)

-- The child's preamble: the set id is (...), its handle `s`.
local CHILD = [[
local shm = require "sysvshm"
local sem = require "sysvshm.sem"
io.stdout:setvbuf("line")
print("pid " .. io.open("/proc/self/stat"):read("n"))
local s = assert(sem.get(math.tointeger(tonumber((...)))))
]]

describe("sysvshm.sem", function()
  it("is the module's field sem too, and has the system's constants", function()
    assert.equal(sem, require("sysvshm").sem)
    local names = { "SEM_UNDO", "IPC_NOWAIT", "GETVAL", "SETVAL", "GETALL", "SETALL", "GETPID",
                    "GETNCNT", "GETZCNT", "SEM_STAT", "SEM_INFO", "IPC_INFO", "IPC_STAT", "IPC_SET",
                    "IPC_RMID", "IPC_CREAT", "IPC_EXCL", "IPC_PRIVATE", "ERANGE", "EIDRM", "EFBIG" }
    local c, why = h.c_values(names, { "sys/ipc.h", "sys/sem.h", "errno.h" })
    if not c then pending(h.env(why)) return end
    for _, n in ipairs(names) do assert.equal(c[n], sem[n], n) end
  end)

  describe("create, open, get", function()
    it("creates a set as ipcs -s shows it, mode 0600 and values 0 by default", function()
      local s, created = new_set(3)
      assert.is_true(created)
      assert.equal(3, s.nsems)
      assert.equal("semset", sem.type(s))
      assert.is_nil(sem.type({}))
      assert.matches("^sysvshm.semset %(id " .. s.id .. ", 3 semaphores%)$", tostring(s))
      local row = ipcs_sem_ids()[s.id]
      assert.is_not_nil(row)
      assert.equal("600", row.perms)
      assert.equal(3, row.nsems)
      assert.same({ 0, 0, 0 }, s:getall())
      local st = s:stat()
      assert.equal(oct"600", st.mode)
      assert.equal(3, st.nsems)
      assert.equal(0, st.otime)
      assert.equal(h.uid(), st.uid)
      assert.equal(h.uid(), st.cuid)
      assert.is_true(math.abs(os.time() - st.ctime) < 5)
    end)

    it("is exclusive by default; exclusive=false opens, and only the creator sets value", function()
      local key = shm.ftok(h.tmpfile(), 0x53)
      local s, created = track(sem.create(key, 2, { value = 1, mode = oct"640" }))
      assert.is_true(created)
      assert.same({ 1, 1 }, s:getall())
      local none, msg, errno = sem.create(key, 2)
      assert.is_nil(none)
      assert.matches("^semget: ", msg)
      assert.equal(sem.EEXIST, errno)
      assert(s:setval(0, 5))
      local t, created2 = sem.create(key, 2, { exclusive = false, value = 3 })
      assert.is_false(created2)
      assert.equal(s, t) -- same id
      assert.same({ 5, 1 }, t:getall())
      assert.equal(s.id, assert(sem.open(key)).id)
      assert.equal(("0x%08x"):format(key & 0xffffffff), ipcs_sem_ids()[s.id].key)
      assert.equal(key, s:stat().key)
      -- more semaphores than the set has: the kernel refuses
      local _, _, e2 = sem.create(key, 3, { exclusive = false })
      assert.equal(sem.EINVAL, e2)
    end)

    it("refuses what is not there, with nil, message, errno", function()
      local key = shm.ftok(h.tmpfile(), 0x54)
      local s, msg, errno = sem.open(key)
      assert.is_nil(s)
      assert.matches("^semget: ", msg)
      assert.equal(sem.ENOENT, errno)
      local t = new_set(1)
      local id = t.id
      assert.is_true(t:remove())
      s, msg, errno = sem.get(id)
      assert.is_nil(s)
      assert.matches("^semctl: ", msg)
      assert.equal(sem.EINVAL, errno)
      -- every call on the removed set
      for _, call in ipairs({ { "getval" }, { "setval", 0, 1 }, { "getall" }, { "setall", { 1 } },
                              { "getpid" }, { "getncnt" }, { "getzcnt" }, { "stat" }, { "remove" },
                              { "set", { mode = 0 } }, { "op", { 0, 1 } }, { "acquire" },
                              { "release" }, { "wait_zero" } }) do
        local r = { t[call[1]](t, table.unpack(call, 2)) }
        assert.is_nil(r[1], call[1])
        assert.is_string(r[2], call[1])
        assert.is_true(r[3] == sem.EINVAL or r[3] == sem.EIDRM, call[1] .. ": " .. tostring(r[3]))
      end
    end)

    it("raises on misuse", function()
      local s = new_set(2)
      local function err(f, ...) return h.errmsg(f, ...) end
      assert.matches("number of semaphores out of range", err(sem.create, sem.IPC_PRIVATE, 0))
      assert.matches("key out of 32%-bit range", err(sem.create, 1 << 40, 1))
      assert.matches("integer expected, got string", err(sem.create, "1", 1))
      assert.matches("unknown option 'modes'", err(sem.create, sem.IPC_PRIVATE, 1, { modes = 1 }))
      assert.matches("mode must be within", err(sem.create, sem.IPC_PRIVATE, 1, { mode = 512 }))
      assert.matches("option 'exclusive' must be a boolean",
                     err(sem.create, sem.IPC_PRIVATE, 1, { exclusive = 1 }))
      assert.matches("option 'value' out of range", err(sem.create, sem.IPC_PRIVATE, 1, { value = -1 }))
      assert.matches("semaphore set id out of range", err(sem.get, -1))
      assert.matches("semaphore number 2 out of range %(0..1%)", err(s.getval, s, 2))
      assert.matches("semaphore number %-1 out of range", err(s.setval, s, -1, 0))
      assert.matches("semaphore value out of range", err(s.setval, s, 0, 65536))
      assert.matches("integer expected, got no value", err(s.setval, s, 0))
      assert.matches("1 values for a set of 2", err(s.setall, s, { 1 }))
      assert.matches("item 2 must be an integer", err(s.setall, s, { 1, "x" }))
      assert.matches("no operations", err(s.op, s, {}))
      assert.matches("operation 1: semaphore number 2 out of range", err(s.op, s, { { 2, 1 } }))
      assert.matches("operation 2: delta 40000 out of range", err(s.op, s, { { 0, 1 }, { 1, 40000 } }))
      assert.matches("flags may only be IPC_NOWAIT and SEM_UNDO", err(s.op, s, { { 0, 1, sem.IPC_CREAT } }))
      assert.matches("operation 1 must be a table", err(s.op, s, { "x" }))
      assert.matches("operation 1: delta must be an integer", err(s.op, s, { { 0 } }))
      assert.matches("more than {num, delta, flags}", err(s.op, s, { { 0, 1, 0, 0 } }))
      assert.matches("timeout must be a non%-negative", err(s.op, s, { 0, 1 }, -1))
      assert.matches("delta out of range", err(s.acquire, s, 0, nil, 0))
      assert.matches("delta out of range", err(s.release, s, 0, 40000))
      assert.matches("unknown option 'owner'", err(s.set, s, { owner = 0 }))
      assert.matches("table expected", err(s.set, s))
      assert.matches("function expected", err(s.with, s, 0, 1))
      assert.matches("sysvshm.semset expected", err(s.getval, {}))
      assert.matches("only SETVAL, SETALL and IPC_SET take an argument",
                     err(sem.semctl, s.id, 0, sem.GETVAL, 1))
      assert.matches("unsupported command", err(sem.semctl, s.id, 0, 12345))
      -- nothing was applied by the refused operations
      assert.same({ 0, 0 }, s:getall())
    end)
  end)

  describe("values", function()
    it("getval/setval/getall/setall agree with semctl and with another process", function()
      local s = new_set(3)
      assert.is_true(s:setval(1, 7))
      assert.equal(7, s:getval(1))
      assert.equal(0, s:getval()) -- num 0 by default
      assert.is_true(s:setall({ 1, 2, 3 }))
      assert.same({ 1, 2, 3 }, sem.semctl(s.id, 0, sem.GETALL))
      assert.equal(2, sem.semctl(s.id, 1, sem.GETVAL))
      assert.is_true(sem.semctl(s.id, 2, sem.SETVAL, 9))
      assert.is_true(sem.semctl(s.id, 0, sem.SETALL, { 4, 5, 6 }))
      local r = h.run_lua(CHILD .. "print(table.concat(s:getall(), ','))", { s.id })
      assert.is_true(r.ok, h.explain(r))
      assert.matches("\n4,5,6\n$", r.stdout)
      -- past SEMVMX: the kernel's ERANGE
      local semvmx = sem.semctl(0, 0, sem.IPC_INFO).semvmx
      local ok, msg, errno = s:setval(0, semvmx + 1)
      assert.is_nil(ok)
      assert.matches("^semctl: ", msg)
      assert.equal(sem.ERANGE, errno)
      assert.is_nil((s:setall({ semvmx + 1, 0, 0 })))
      assert.equal(4, s:getval(0))
    end)

    it("getpid names the last process to operate, getncnt/getzcnt the waiters", function()
      local s = new_set(2)
      assert.equal(0, s:getpid(0))
      local child = h.spawn(CHILD .. [[
assert(s:op({ 1, 1 }))
print("ready")
print(s:op({ 0, -1 }, 20))
print(s:wait_zero(1, 20))
]], s.id)
      local pid = child:waitpid()
      child:expect("^ready$")
      assert.equal(pid, s:getpid(1))
      h.wait_until(function() return s:getncnt(0) == 1 end, "a waiter for an increase")
      assert.equal(0, s:getzcnt(0))
      assert.is_true(s:release(0))
      h.wait_until(function() return s:getzcnt(1) == 1 end, "a waiter for zero")
      assert.equal(0, s:getncnt(0))
      assert.is_true(s:op({ 1, -1 }))
      local out, ok = h.join(child)
      assert.is_true(ok, out)
      assert.equal("ready\ntrue\ntrue\n", out)
      -- a sleeping operation that completes counts for the sleeper
      assert.equal(pid, s:getpid(0))
      assert.equal(pid, s:getpid(1))
    end)

    it("stat and set change uid, gid and mode as ipcs sees them", function()
      local s = new_set(1)
      assert.is_true(s:set({ mode = oct"640" }))
      assert.equal("640", ipcs_sem_ids()[s.id].perms)
      assert.is_true(s:set({ uid = 65534, gid = 65534 }))
      local st = s:stat()
      assert.equal(65534, st.uid)
      assert.equal(65534, st.gid)
      assert.equal(h.uid(), st.cuid)
      assert.equal(oct"640", st.mode)
      assert.same(st, (function() local t = sem.semctl(s.id, 0, sem.IPC_STAT) return t end)())
    end)
  end)

  describe("operations", function()
    it("applies a list atomically: all or none", function()
      local s = new_set(3)
      assert.is_true(s:op({ { 0, 2 }, { 1, 1 } }))
      assert.same({ 2, 1, 0 }, s:getall())
      -- the third cannot proceed: nothing is applied
      assert.same({ false, "would block" },
                  { s:op({ { 0, -1 }, { 1, -1 }, { 2, -1, sem.IPC_NOWAIT } }) })
      assert.same({ 2, 1, 0 }, s:getall())
      assert.same({ false, "timeout" }, { s:op({ { 0, -1 }, { 2, -1 } }, 0.05) })
      assert.same({ 2, 1, 0 }, s:getall())
      assert.is_true(s:op({ { 0, -2 }, { 1, -1 }, { 2, 3 } }))
      assert.same({ 0, 0, 3 }, s:getall())
      assert.is_true(sem.semop(s.id, { { 2, -3, sem.IPC_NOWAIT } }))
      local ok, msg, errno = sem.semop(s.id, { { 3, 1 } }) -- past the set
      assert.is_nil(ok)
      assert.matches("^semtimedop: ", msg)
      assert.equal(sem.EFBIG, errno)
    end)

    it("times out after the timeout, not before, and a zero timeout only tries", function()
      local s = new_set(1)
      for _, t in ipairs({ 0, 0.25 }) do
        local t0 = shm.clock()
        assert.same({ false, "timeout" }, { s:acquire(0, t) })
        local took = shm.clock() - t0
        assert.is_true(took >= t and took < t + 1, ("%g s for %g"):format(took, t))
      end
      assert.same({ false, "timeout" }, { s:op({ 0, -1 }, 0) })
      assert(s:setval(0, 1))
      assert.same({ false, "timeout" }, { s:wait_zero(0, 0.05) })
      assert.is_true(s:acquire(0, 0))
      assert.is_true(s:wait_zero(0, 0))
    end)

    it("acquire and release take and give delta", function()
      local s = new_set(2, { value = 5 })
      assert.is_true(s:acquire(1, nil, 3))
      assert.same({ 5, 2 }, s:getall())
      assert.same({ false, "timeout" }, { s:acquire(1, 0.01, 3) })
      assert.is_true(s:release(1, 3))
      assert.same({ 5, 5 }, s:getall())
    end)

    it("wakes a waiter in another process, and EIDRM when the set is removed", function()
      local s = new_set(1)
      local child = h.spawn(CHILD .. [[
print("ready")
print(s:acquire(0, 20))
print(s:acquire(0))
]], s.id)
      child:expect("^ready$")
      h.wait_until(function() return s:getncnt(0) == 1 end, "the child waiting")
      assert.is_true(s:release(0))
      assert.equal("true", child:line())
      h.wait_until(function() return s:getncnt(0) == 1 end, "the child waiting again")
      assert.is_true(s:remove())
      local out = h.join(child)
      assert.matches("nil\tsemtimedop: Identifier removed\t" .. sem.EIDRM .. "\n$", out)
    end)

    it("with holds the semaphore around fn, releases on error, returns fn's results", function()
      local s = new_set(1, { value = 1 })
      local a, b = s:with(0, function(x) return x, s:getval(0) end, "x")
      assert.equal("x", a)
      assert.equal(0, b)
      assert.equal(1, s:getval(0))
      assert.equal(0, s:with(function() return s:getval(0) end))
      local ok, e = pcall(s.with, s, 0, function() error({ code = 7 }) end)
      assert.is_false(ok)
      assert.same({ code = 7 }, e)
      assert.equal(1, s:getval(0))
      -- removed while held: the release fails, which raises
      assert.matches("semaphore with: semtimedop: ", h.errmsg(s.with, s, 0, function() s:remove() end))
    end)
  end)

  describe("SEM_UNDO", function()
    it("gives back what a SIGKILLed holder took (acquire, with, op with SEM_UNDO), not plain ops", function()
      local s = new_set(4, { value = 3 })
      local child = h.spawn(CHILD .. [[
assert(s:acquire(0))
assert(s:acquire(1, nil, 2))
assert(s:op({ { 2, -1, sem.SEM_UNDO }, { 3, -1 } }))
s:with(0, function() print("holding") while true do shm.sleep(60) end end)
]], s.id)
      child:expect("^holding$")
      assert.same({ 1, 1, 2, 2 }, s:getall())
      child:kill()
      assert.is_true(child.sent)
      -- semaphore 3 was lowered without SEM_UNDO: it stays
      assert.same({ 3, 3, 3, 2 }, s:getall())
    end)
  end)

  describe("signals", function()
    for _, where in ipairs({ "main", "coroutine" }) do
      for _, call in ipairs({ "op", "op_timed", "acquire", "wait_zero", "with", "semop" }) do
        it(("Ctrl-C interrupts %s in the %s thread"):format(call, where), function()
          local s = new_set(2)
          assert(s:setval(1, 1))
          local child = h.spawn_limited(20, CHILD .. [[
local calls = {
  op = function() return s:op({ 0, -1 }) end,
  op_timed = function() return s:op({ 0, -1 }, 30) end,
  acquire = function() return s:acquire(0) end,
  wait_zero = function() return s:wait_zero(1) end,
  with = function() return s:with(0, print) end,
  semop = function() return sem.semop(s.id, { { 0, -1 } }) end,
}
local call = calls[select(3, ...)]
print("ready")
if select(2, ...) == "coroutine" then print(coroutine.wrap(call)()) else print(call()) end
print("returned")
]], s.id, where, call)
          child:waitpid()
          child:expect("^ready$")
          h.wait_until(function() return s:getncnt(0) + s:getzcnt(1) == 1 end, "the child blocked")
          local t0 = shm.clock()
          assert.is_true(os.execute("kill -INT " .. child.pid))
          child:join()
          local took = shm.clock() - t0
          local out = child:output()
          assert.is_false(child.ok, out)
          assert.matches("interrupted!", out, 1, true)
          assert.is_nil(out:find("returned", 1, true), out)
          assert.is_true(took < 3, ("took %.2f s"):format(took))
          assert.same({ 0, 1 }, s:getall()) -- nothing taken
        end)
      end
    end

    it("other signals (SIGSTOP and SIGCONT) do not end a wait", function()
      local s = new_set(1)
      local child = h.spawn(CHILD .. [[
print("ready")
local t0 = shm.clock()
local ok, why = s:acquire(0, 1.5)
print(ok, why, shm.clock() - t0 >= 1.5)
print(s:acquire(0))
]], s.id)
      child:waitpid()
      child:expect("^ready$")
      h.wait_until(function() return s:getncnt(0) == 1 end, "the child blocked")
      for _ = 1, 3 do
        assert.is_true(os.execute("kill -STOP " .. child.pid .. " && kill -CONT " .. child.pid))
        shm.sleep(0.1)
      end
      assert.equal("false\ttimeout\ttrue", child:line())
      h.wait_until(function() return s:getncnt(0) == 1 end, "the child blocked again")
      assert.is_true(os.execute("kill -STOP " .. child.pid .. " && kill -CONT " .. child.pid))
      shm.sleep(0.3)
      -- still waiting: counted as a waiter again (between two slices of
      -- its wait it is not, for a moment; a wait that ended would never be)
      h.wait_until(function() return s:getncnt(0) == 1 end, "the child still waiting", 5)
      assert.is_true(s:release(0))
      local out, ok = h.join(child)
      assert.is_true(ok, out)
      assert.matches("\ntrue\n$", out)
    end)
  end)

  describe("permissions", function()
    it("are the kernel's, for user nobody #env", function()
      local can, why = h.nobody_ok()
      if not can then pending(h.env(why)) return end
      local s = new_set(1, { value = 1 })
      local probe = [[
local sem = require "sysvshm.sem"
local id = math.tointeger(tonumber((...)))
local function show(name, ...) print(name, select("#", ...) > 1 and select(3, ...) or tostring((...))) end
show("get", sem.get(id))
show("getval", sem.semctl(id, 0, sem.GETVAL))
show("setval", sem.semctl(id, 0, sem.SETVAL, 1))
show("op", sem.semop(id, { 0, 1 }))
show("rmid", sem.semctl(id, 0, sem.IPC_RMID))
show("set", sem.semctl(id, 0, sem.IPC_SET, { mode = 511 }))
]]
      local function run()
        local r = h.run_lua_as_nobody(probe, { s.id })
        assert.is_true(r.ok, h.explain(r))
        local t = {}
        for k, v in r.stdout:gmatch("(%a+)\t(%S+)") do t[k] = v end
        return t
      end
      local A, P = tostring(sem.EACCES), tostring(sem.EPERM)
      -- set reads the status first (to keep the fields not given): EACCES
      assert.same({ get = A, getval = A, setval = A, op = A, rmid = P, set = A }, run())
      assert(s:set({ mode = oct"604" })) -- others read
      local t = run()
      assert.equal("sysvshm.semset", t.get:match("^(%S+)"))
      assert.same({ getval = "1", setval = A, op = A, rmid = P, set = P },
                  { getval = t.getval, setval = t.setval, op = t.op, rmid = t.rmid, set = t.set })
      assert(s:set({ mode = oct"606" })) -- others alter
      t = run()
      assert.same({ "true", "true", P }, { t.setval, t.op, t.rmid })
      assert.equal(2, s:getval(0))
      assert(s:set({ uid = 65534 })) -- nobody owns it now: may set and remove
      t = run()
      assert.same({ "true", tostring(sem.EINVAL) }, { t.rmid, t.set }) -- set came after the removal
      assert.is_nil((sem.get(s.id)))
    end)
  end)

  describe("list", function()
    it("lists the sets as ipcs -s does", function()
      local s = new_set(2, { mode = oct"640" })
      local found
      for _, st in ipairs(assert(sem.list())) do
        if st.id == s.id then found = st end
      end
      assert.is_not_nil(found)
      local want = s:stat()
      want.id = s.id
      assert.same(want, found)
      local byindex = sem.semctl(0, 0, sem.SEM_INFO)
      assert.is_true(byindex.maxidx >= 0)
    end)
  end)
end)

describe("shm.private", function()
  it("gives a segment attached and already removed, attachable by id while attached", function()
    local seg, id = assert(shm.private(4096, { mode = oct"640" }))
    h.track_segment(seg)
    local st = assert(shm.stat(id))
    assert.is_true(st.removed)
    assert.equal(1, st.nattch)
    assert.equal(oct"640", st.mode)
    assert.equal(4096, #seg)
    assert.matches("dest", h.ipcs(id).status)
    seg:write(0, "hello")
    local r = h.run_lua([[
local shm = require "sysvshm"
local seg = assert(shm.attach(math.tointeger(tonumber((...)))))
io.write(seg:read(0, 5))
seg:write(0, "HELLO")
]], { id })
    assert.is_true(r.ok, h.explain(r))
    assert.equal("hello", r.stdout)
    assert.equal("HELLO", seg:read(0, 5))
    assert.is_true(seg:detach())
    -- everyone left: it is gone, and attaching fails
    assert.is_nil(h.ipcs(id))
    local none, msg, errno = shm.attach(id)
    assert.is_nil(none)
    assert.matches("^shmat: ", msg)
    assert.is_true(errno == shm.EINVAL or errno == shm.EIDRM)
  end)

  it("goes when its only process is SIGKILLed", function()
    local child = h.spawn([[
local shm = require "sysvshm"
io.stdout:setvbuf("line")
print("pid " .. io.open("/proc/self/stat"):read("n"))
local seg, id = assert(shm.private(1 << 16))
print("id " .. id)
while true do shm.sleep(60) end
]])
    local id = math.tointeger(tonumber(child:expect("^id (%d+)$")))
    assert.is_not_nil(h.ipcs(id))
    child:kill()
    h.wait_until(function() return h.ipcs(id) == nil end, "the segment to go")
  end)

  it("refuses bad arguments and unknown options; the system's refusals come back", function()
    assert.matches("size must not be negative", h.errmsg(shm.private, -1))
    assert.matches("unknown option 'readonly'", h.errmsg(shm.private, 64, { readonly = true }))
    assert.matches("mode must be within", h.errmsg(shm.private, 64, { mode = 4096 }))
    local seg, msg, errno = shm.private(0)
    assert.is_nil(seg)
    assert.matches("^shmget: ", msg)
    assert.equal(shm.EINVAL, errno)
  end)
end)

describe("demos", function()
  local function demo_segments(pid)
    local t = {}
    for _, st in ipairs(assert(shm.list())) do
      if st.cpid == pid then t[#t + 1] = st end
    end
    return t
  end

  for _, d in ipairs({ { "counter.lua", "--procs 3 --count 100000000", 4 },
                       { "pipeline.lua", "--producers 2 --consumers 2 --messages 1000000000 --size 64", 5 },
                       { "ratelimit.lua", "--workers 3 --seconds 60", 4 } }) do
    it(d[1] .. " leaves no segment when every process is SIGKILLed", function()
      -- no 5.4 paths: the demo finds the in-tree build itself, and so do
      -- the workers it starts with its own interpreter (arg[-1]), which
      -- may be a plain lua5.4 even when the test runs under a gate's wrapper
      local r = h.sh("cd " .. h.quote(h.root) .. " && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
        .. "setsid lua5.4 lua/demo/" .. d[1] .. " " .. d[2] .. " >/dev/null 2>&1 & echo $!")
      local pid = math.tointeger(tonumber(r.stdout))
      assert.is_not_nil(pid, h.explain(r))
      local ok, err = pcall(function()
        local segs = h.wait_until(function()
          local t = demo_segments(pid)
          return #t == 1 and t[1].nattch == d[3] and t
        end, "the demo's processes attached", 20)
        assert.is_true(segs[1].removed)
        os.execute("kill -KILL -" .. pid)
        h.wait_until(function() return h.ipcs(segs[1].id) == nil end, "the segment to go")
      end)
      os.execute("kill -KILL -" .. pid .. " 2>/dev/null")
      assert(ok, err)
    end)
  end

  describe("semwriter.lua and a C writer", function()
    local exe, keyfile
    local function L(args)
      return h.sh(h.lua_env() .. "lua5.4 lua/demo/semwriter.lua --path " .. h.quote(keyfile)
        .. " --proj 7 " .. args)
    end

    before_each(function()
      keyfile = h.tmpfile()
    end)

    after_each(function()
      L("--teardown")
      if exe then os.remove(exe) end
    end)

    local function build()
      if not h.sh("command -v cc").ok then return nil end
      exe = os.tmpname()
      local r = h.sh("cc -D_GNU_SOURCE -o " .. h.quote(exe) .. " " .. h.quote(h.root .. "/spec/fixtures/semwriter.c"))
      assert(r.ok, h.explain(r))
      return exe
    end

    it("append to one string under one semaphore, none lost or torn #env", function()
      if not build() then pending(h.env("no C compiler (cc) found")) return end
      local r = L("--setup")
      assert.is_true(r.ok, h.explain(r))
      local shmid, semid = r.stdout:match("^segment (%d+) semaphore (%d+)\n$")
      assert.is_not_nil(shmid, r.stdout)
      local c = h.sh(h.quote(exe) .. " " .. h.quote(keyfile) .. " 7 C 2000 & "
        .. h.lua_env() .. "lua5.4 lua/demo/semwriter.lua --path " .. h.quote(keyfile)
        .. " --proj 7 --write L --count 2000; wait $!")
      assert.is_true(c.ok, h.explain(c))
      assert.matches("C wrote 2000 records", c.stdout)
      assert.matches("L wrote 2000 records", c.stdout)
      r = L("--check C=2000,L=2000")
      assert.is_true(r.ok, h.explain(r))
      assert.matches("\nok\n$", r.stdout)
      -- an independent view: the string's length, records of 8 bytes
      local seg = h.attach(math.tointeger(tonumber(shmid)), { readonly = true })
      assert.equal(4000 * 8, #seg:cstring(0))
      seg:detach()
      assert.equal(1, sem.semctl(math.tointeger(tonumber(semid)), 0, sem.GETVAL))
      -- a check that fails when a count is wrong
      r = L("--check C=2000,L=1999")
      assert.is_false(r.ok)
      assert.matches("FAILED", r.stdout)
      r = L("--teardown")
      assert.is_true(r.ok, h.explain(r))
      assert.is_nil(ipcs_sem_ids()[math.tointeger(tonumber(semid))])
      assert.is_nil(h.ipcs(math.tointeger(tonumber(shmid))))
    end)

    it("a SIGKILLed Lua holder releases through the kernel's undo #env", function()
      if not build() then pending(h.env("no C compiler (cc) found")) return end
      assert.is_true(L("--setup").ok)
      local s = assert(sem.open(shm.ftok(keyfile, 7)))
      local holder = h.spawn_limited(30, [[
arg = { [0] = "lua/demo/semwriter.lua", "--path", (...), "--proj", "7", "--hold" }
print("pid " .. io.open("/proc/self/stat"):read("n"))
dofile("lua/demo/semwriter.lua")
]], keyfile)
      holder:waitpid()
      holder:expect("^holding$")
      assert.equal(0, s:getval(0))
      -- the C writer blocks behind the holder
      local wout = os.tmpname()
      os.execute(h.quote(exe) .. " " .. h.quote(keyfile) .. " 7 C 50 >" .. h.quote(wout) .. " 2>&1 &")
      h.wait_until(function() return s:getncnt(0) == 1 end, "the C writer waiting")
      holder:kill()
      h.wait_until(function()
        local f = io.open(wout)
        local text = f and f:read("a")
        if f then f:close() end
        return text and text:find("C wrote 50 records", 1, true)
      end, "the C writer to finish")
      os.remove(wout)
      local r = L("--check C=50")
      assert.is_true(r.ok, h.explain(r))
      assert.equal(1, s:getval(0))
    end)
  end)
end)

describe("sysvshm ls, stat and rm with semaphore sets", function()
  local function cli(args)
    return h.sh(h.lua_env() .. "lua5.4 bin/sysvshm " .. args)
  end

  it("ls lists sets beside segments; --sem and --shm filter, as ipcs -s and -m", function()
    local s = new_set(3, { mode = oct"640" })
    local _, segid = h.new_segment(64)
    local r = cli("ls")
    assert.is_true(r.ok, h.explain(r))
    local shm_part, sem_part = r.stdout:match("^(KEY +ID .-)\n\n(KEY +SEMID .*)$")
    assert.is_not_nil(shm_part, r.stdout)
    assert.matches("\n0x%x+ +" .. segid .. " ", shm_part)
    local row = ipcs_sem_ids()[s.id]
    assert.matches("\n" .. row.key .. " +" .. s.id .. " +" .. row.owner .. " +rw%-r%-%-%-%-%- +3 +never ", sem_part)
    r = cli("ls --sem")
    assert.is_true(r.ok, h.explain(r))
    assert.matches("^KEY +SEMID", r.stdout)
    assert.is_nil(r.stdout:find("NATTCH", 1, true))
    r = cli("ls --shm")
    assert.is_true(r.ok, h.explain(r))
    assert.is_nil(r.stdout:find("SEMID", 1, true))
    assert.matches("\n0x%x+ +" .. segid .. " ", r.stdout)
    r = cli("ls --shm --sem")
    assert.equal(2, r.code)
    r = cli("ls --json --sem")
    assert.is_true(r.ok, h.explain(r))
    local line = r.stdout:match('[^\n]*"id":' .. s.id .. ',[^\n]*')
    assert.is_not_nil(line, r.stdout)
    assert.matches('^{"type":"sem","id":' .. s.id .. ',"key":0,"nsems":3,"mode":416,', line)
  end)

  it("stat --sem shows every field and each semaphore; by key too", function()
    local key = shm.ftok(h.tmpfile(), 0x55)
    local s = track(assert(sem.create(key, 2, { value = 4 })))
    assert(s:acquire(1))
    local r = cli("stat --sem " .. s.id)
    assert.is_true(r.ok, h.explain(r))
    for _, f in ipairs({ "id", "key", "nsems", "mode", "uid", "gid", "cuid", "cgid", "otime", "ctime" }) do
      assert.matches("\n?" .. f .. " +%S", r.stdout)
    end
    assert.matches("\n +0 +4 +" .. h.pid() .. " +0 +0\n", r.stdout) -- SETVAL (value) counts too
    assert.matches("\n +1 +3 +" .. h.pid() .. " +0 +0\n", r.stdout)
    r = cli("stat --sem --json --key " .. key)
    assert.is_true(r.ok, h.explain(r))
    assert.matches('^{"type":"sem","id":' .. s.id .. ',"key":' .. key .. ',"nsems":2,.*"values":%[4,3%]}\n$', r.stdout)
    local id = s.id
    assert(s:remove())
    r = cli("stat --sem " .. id)
    assert.equal(1, r.code)
    assert.matches("no semaphore set with id " .. id, r.stderr)
  end)

  it("rm --sem removes sets by id and key, and refuses --mine-unattached", function()
    local a, b = new_set(1), new_set(1)
    local key = shm.ftok(h.tmpfile(), 0x56)
    local c = track(assert(sem.create(key, 1)))
    local r = cli("rm --sem --dry-run " .. a.id)
    assert.is_true(r.ok, h.explain(r))
    assert.equal("would remove 1 semaphore set: " .. a.id .. "\n", r.stdout)
    assert.is_not_nil(ipcs_sem_ids()[a.id])
    r = cli("rm --sem " .. a.id .. " " .. b.id)
    assert.is_true(r.ok, h.explain(r))
    assert.equal("removed 2 semaphore sets: " .. a.id .. " " .. b.id .. "\n", r.stdout)
    r = cli("rm --sem --key " .. key)
    assert.is_true(r.ok, h.explain(r))
    local ids = ipcs_sem_ids()
    assert.is_nil(ids[a.id])
    assert.is_nil(ids[b.id])
    assert.is_nil(ids[c.id])
    r = cli("rm --sem " .. a.id)
    assert.equal(1, r.code)
    assert.matches("no semaphore set with id " .. a.id, r.stderr)
    r = cli("rm --sem --mine-unattached")
    assert.equal(2, r.code)
    assert.matches("segments only", r.stderr)
  end)
end)
