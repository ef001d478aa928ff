-- The module functions: constants, ftok, create, open, attach, stat, remove,
-- the shmget/shmat/shmdt/shmctl mirrors, sleep, type, _VERSION.
local h = require "helpers"
local shm = require "sysvshm"

local IPC_NAMES = {
  "IPC_PRIVATE", "IPC_CREAT", "IPC_EXCL", "IPC_NOWAIT", "IPC_RMID", "IPC_SET",
  "IPC_STAT", "SHM_RDONLY", "SHM_RND", "SHM_LOCK", "SHM_UNLOCK",
}
local ERRNO_NAMES = {
  "EACCES", "EEXIST", "EIDRM", "EINVAL", "ENOENT", "ENOMEM", "ENOSPC", "EPERM",
}
local HEADERS = { "sys/types.h", "sys/ipc.h", "sys/shm.h", "errno.h" }

-- The system's values, compiled from its headers (nil if there is no cc).
local C, C_WHY = h.c_values((function()
  local all = {}
  for _, n in ipairs(IPC_NAMES) do all[#all + 1] = n end
  for _, n in ipairs(ERRNO_NAMES) do all[#all + 1] = n end
  return all
end)(), HEADERS)

-- errno values used in the checks below: from the headers when possible.
local EEXIST = C and C.EEXIST or shm.EEXIST
local EINVAL = C and C.EINVAL or shm.EINVAL
local ENOENT = C and C.ENOENT or shm.ENOENT

-- Check a `nil, message, errno` failure: message names the call.
local function assert_fails(call, errno, ...)
  local n = select("#", ...)
  local v, msg, en = ...
  assert.equal(3, n)
  assert.is_nil(v)
  assert.is_string(msg)
  assert.matches(call .. ": ", msg, 1, true)
  assert.equal(errno, en)
end

local function fresh_key(proj)
  return assert(shm.ftok(h.tmpfile(), proj or 0x66))
end

after_each(h.cleanup)

describe("sysvshm module", function()
  it("exports every function of the contract", function()
    for _, name in ipairs { "ftok", "create", "open", "attach", "stat", "remove",
                            "shmget", "shmat", "shmdt", "shmctl", "sleep", "type" } do
      assert.is_function(shm[name], name)
    end
  end)

  it("exports only what its documentation names (no internals of the core)", function()
    local documented = {}
    local function read(path)
      local f = assert(io.open(h.root .. "/" .. path))
      local text = f:read("a")
      f:close()
      return text
    end
    for name in read("lua/sysvshm/init.lua"):gmatch("@field ([%w_]+)") do
      documented[name] = true
    end
    for _, file in ipairs { "src/core.c", "src/sync.c" } do
      for name in read(file):gmatch("@function ([%w_]+)%s") do documented[name] = true end
    end
    for name in pairs(shm) do
      assert.is_true(documented[name] == true, "undocumented export " .. tostring(name))
    end
    assert.is_nil(shm.channel_new)
    assert.is_nil(shm.dict_open)
  end)

  it("has a _VERSION naming the module and the rockspec's version", function()
    assert.is_string(shm._VERSION)
    local f = assert(io.open(h.root .. "/sysvshm-scm-1.rockspec"))
    local version = f:read("a"):match('\nversion%s*=%s*"([^"]+)"')
    f:close()
    assert.equal("sysvshm " .. version, shm._VERSION)
  end)

  it("sets no global variable when required", function()
    local r = h.run_lua([[
      local before = {}
      for k in pairs(_G) do before[k] = true end
      local m = require "sysvshm"
      require "sysvshm.core"
      assert(type(m) == "table" and package.loaded.sysvshm == m)
      local extra = {}
      for k in pairs(_G) do
        if not before[k] then extra[#extra + 1] = tostring(k) end
      end
      io.write("globals:", table.concat(extra, ","))
    ]])
    assert.is_true(r.ok, h.explain(r))
    assert.equal("globals:", r.stdout)
  end)
end)

describe("constants", function()
  it("are integers with the values of the system headers #env", function()
    if not C then pending(h.env(C_WHY)) return end
    for _, list in ipairs { IPC_NAMES, ERRNO_NAMES } do
      for _, name in ipairs(list) do
        assert.equal("integer", math.type(shm[name]), name)
        assert.equal(C[name], shm[name], name)
      end
    end
  end)

  it("include the Linux errno numbers the contract quotes", function()
    assert.equal(17, shm.EEXIST)
    assert.equal(2, shm.ENOENT)
  end)
end)

describe("ftok", function()
  it("takes the project id as an integer or a one-character string", function()
    local path = h.tmpfile()
    local k = shm.ftok(path, 65)
    assert.equal("integer", math.type(k))
    assert.equal(k, shm.ftok(path, "A"))
    assert.equal(k, shm.ftok(path, 65.0))
    assert.not_equal(k, shm.ftok(path, 66))
  end)

  it("gives the key C's ftok gives #env", function()
    local path = h.tmpfile()
    local c, why = h.c_values({ { "k1", ("ftok(%q, 0x66)"):format(path) },
                                { "k2", ("ftok(%q, 0xF0)"):format(path) } },
                              { "sys/ipc.h" })
    if not c then pending(h.env(why)) return end
    assert.equal(c.k1, shm.ftok(path, 0x66))
    assert.equal(c.k2, shm.ftok(path, 0xF0))
  end)

  it("returns nil, message, ENOENT for a missing path", function()
    assert_fails("ftok", ENOENT, shm.ftok(h.root .. "/no/such/file", 1))
  end)

  it("raises on bad arguments", function()
    local path = h.tmpfile()
    for _, args in ipairs {
      {}, { path }, { path, "AB" }, { path, "" }, { path, 1.5 }, { path, {} },
      { path, 0 / 0 }, { path, math.huge }, { path, true }, { nil, 1 }, { {}, 1 },
      { path, math.maxinteger },
    } do
      assert.has_error(function() shm.ftok(table.unpack(args, 1, 2)) end)
    end
  end)
end)

describe("create", function()
  it("makes a segment of the size asked for, mode 0600 by default", function()
    local id = h.track(shm.create(shm.IPC_PRIVATE, 100))
    assert.equal("integer", math.type(id))
    local st = shm.stat(id)
    assert.equal(100, st.size)
    assert.equal(tonumber("600", 8), st.mode)
    local row = h.ipcs(id)
    assert.is_table(row, "segment not listed by ipcs -m")
    assert.equal("600", row.perms)
    assert.equal(100, row.bytes)
  end)

  it("uses opts.mode", function()
    local id = h.track(shm.create(shm.IPC_PRIVATE, 64, { mode = tonumber("640", 8) }))
    assert.equal(tonumber("640", 8), shm.stat(id).mode)
    assert.equal("640", h.ipcs(id).perms)
  end)

  it("accepts floats with an integer value", function()
    local id = h.track(shm.create(shm.IPC_PRIVATE, 64.0))
    assert.equal(64, shm.stat(id).size)
  end)

  it("makes a new segment for each IPC_PRIVATE call", function()
    local a = h.track(shm.create(shm.IPC_PRIVATE, 64))
    local b = h.track(shm.create(shm.IPC_PRIVATE, 64))
    assert.is_number(a)
    assert.is_number(b)
    assert.not_equal(a, b)
  end)

  it("is exclusive by default: a taken key gives nil, message, EEXIST (17)", function()
    local key = fresh_key()
    local id = h.track(shm.create(key, 64))
    assert.is_number(id)
    assert.equal(key, shm.stat(id).key)
    assert_fails("shmget", EEXIST, shm.create(key, 64))
    assert_fails("shmget", 17, shm.create(key, 64, { exclusive = true }))
  end)

  it("with exclusive = false returns the existing segment's id", function()
    local key = fresh_key()
    local id = h.track(shm.create(key, 64))
    assert.equal(id, shm.create(key, 64, { exclusive = false }))
    assert.equal(id, shm.create(key, 16, { exclusive = false }))
  end)

  it("with exclusive = false creates the segment when there is none", function()
    local key = fresh_key()
    local id = h.track(shm.create(key, 64, { exclusive = false }))
    assert.is_number(id)
    assert.equal(id, shm.open(key))
  end)

  it("takes a key as ftok gives it (negative) or as ipcs prints it", function()
    local key = fresh_key(0xF0) -- project id >= 0x80: a negative key_t
    assert.is_true(key < 0)
    local id = h.track(shm.create(key, 64))
    assert.equal(key, shm.stat(id).key)
    assert.equal(id, shm.open(key & 0xffffffff))
  end)

  it("returns nil, message, EINVAL for size 0", function()
    assert_fails("shmget", EINVAL, shm.create(shm.IPC_PRIVATE, 0))
  end)

  it("raises on bad arguments and unknown options", function()
    local P = shm.IPC_PRIVATE
    for i, args in ipairs {
      {}, { P }, { "0", 64 }, { P, "64" }, { P, -1 }, { P, 64.5 }, { P, 0 / 0 },
      { 1.5, 64 }, { 1 << 33, 64 }, { -(1 << 33), 64 }, { P, 64, "opts" },
      { P, 64, { readOnly = true } }, { P, 64, { [1] = 0 } },
      { P, 64, { mode = "0600" } }, { P, 64, { mode = 1.5 } },
      { P, 64, { mode = -1 } }, { P, 64, { mode = tonumber("1000", 8) } },
      { P, 64, { exclusive = 1 } }, { P, 64, { exclusive = "no" } },
    } do
      local ok, id = pcall(shm.create, table.unpack(args, 1, 3))
      if ok then h.track(id) end
      assert.is_false(ok, "case " .. i .. " did not raise")
    end
  end)
end)

describe("open", function()
  it("finds an existing segment", function()
    local key = fresh_key()
    local id = h.track(shm.create(key, 64))
    assert.equal(id, shm.open(key))
  end)

  it("returns nil, message, ENOENT (2) when there is none", function()
    assert_fails("shmget", ENOENT, shm.open(fresh_key()))
    assert_fails("shmget", 2, shm.open(fresh_key()))
  end)

  it("does not create a segment for IPC_PRIVATE (size 0 is refused)", function()
    local id = shm.open(shm.IPC_PRIVATE)
    h.track(id)
    assert.is_nil(id)
  end)

  it("raises on bad arguments", function()
    for _, args in ipairs { {}, { "1" }, { 1.5 }, { {} }, { 1 << 40 } } do
      assert.has_error(function() shm.open(table.unpack(args, 1, 1)) end)
    end
  end)
end)

describe("attach", function()
  it("returns a read-write segment of the segment's size", function()
    local id = h.new_id(100)
    local seg = h.track_segment(shm.attach(id))
    assert.equal("segment", shm.type(seg))
    assert.equal(100, #seg)
    assert.equal(id, seg:id())
    assert.is_false(seg:readonly())
    assert.equal(4, seg:write(0, "abcd"))
  end)

  it("with readonly = true: reads work, writes raise and write nothing", function()
    local id = h.new_id(64)
    local rw = h.attach(id)
    rw:write(0, "hello\0")
    local ro = h.track_segment(shm.attach(id, { readonly = true }))
    assert.is_true(ro:readonly())
    assert.equal("hello", ro:cstring(0))
    assert.equal("hello", ro:read(0, 5))
    assert.equal(("h"):byte(), ro:byte(0))
    assert.error_matches(function() ro:write(0, "X") end, "read%-only")
    assert.error_matches(function() ro:setbyte(0, 88) end, "read%-only")
    assert.error_matches(function() ro:fill(88) end, "read%-only")
    assert.error_matches(function() ro:fill(88, 0, 1) end, "read%-only")
    assert.equal("hello\0", rw:read(0, 6))
  end)

  it("with readonly = false attaches read-write", function()
    local seg = h.attach(h.new_id(64), { readonly = false })
    assert.is_false(seg:readonly())
  end)

  it("returns nil, message, EINVAL for an id that does not exist", function()
    local id = h.new_id(64)
    assert.is_true(shm.remove(id))
    assert_fails("shmat", EINVAL, shm.attach(id))
  end)

  it("raises on bad arguments and unknown options", function()
    local id = h.new_id(64)
    for i, args in ipairs {
      {}, { "1" }, { -1 }, { 1.5 }, { id, "ro" }, { id, { ro = true } },
      { id, { readonly = 1 } }, { id, { readonly = "yes" } },
    } do
      local ok, seg = pcall(shm.attach, table.unpack(args, 1, 2))
      if ok then h.track_segment(seg) end
      assert.is_false(ok, "case " .. i .. " did not raise")
    end
  end)
end)

describe("stat", function()
  local INT_FIELDS = { "key", "size", "mode", "uid", "gid", "cuid", "cgid", "cpid",
                       "lpid", "nattch", "atime", "dtime", "ctime" }

  it("has every field, integers and the boolean removed", function()
    local st = shm.stat(h.new_id(64))
    for _, f in ipairs(INT_FIELDS) do
      assert.equal("integer", math.type(st[f]), f)
    end
    assert.is_boolean(st.removed)
    assert.is_false(st.removed)
  end)

  it("reports this process as creator and the current owner", function()
    local st = shm.stat(h.new_id(64))
    assert.equal(h.pid(), st.cpid)
    assert.equal(h.uid(), st.uid)
    assert.equal(h.uid(), st.cuid)
    assert.equal(0, st.key) -- IPC_PRIVATE
    assert.equal(0, st.nattch)
    assert.equal(0, st.atime)
    assert.equal(0, st.dtime)
    assert.is_true(st.ctime > 0)
  end)

  it("follows attach and detach (nattch, lpid, atime, dtime)", function()
    local id = h.new_id(64)
    assert.equal(0, shm.stat(id).nattch)
    local a = h.attach(id)
    local st = shm.stat(id)
    assert.equal(1, st.nattch)
    assert.equal(h.pid(), st.lpid)
    assert.is_true(st.atime > 0)
    local b = h.attach(id, { readonly = true })
    assert.equal(2, shm.stat(id).nattch)
    b:detach()
    st = shm.stat(id)
    assert.equal(1, st.nattch)
    assert.is_true(st.dtime > 0)
    a:detach()
    assert.equal(0, shm.stat(id).nattch)
  end)

  it("marks a segment removed while attached; it goes at the last detach", function()
    local id = h.new_id(64)
    local seg = h.attach(id)
    seg:write(0, "still here")
    assert.is_true(shm.remove(id))
    local st = shm.stat(id)
    assert.is_true(st.removed)
    assert.equal(1, st.nattch)
    assert.equal("still here", seg:read(0, 10))
    assert.matches("dest", h.ipcs(id).status)
    seg:detach()
    assert_fails("shmctl", EINVAL, shm.stat(id))
    assert.is_nil(h.ipcs(id))
  end)

  it("returns nil, message, EINVAL for an id that does not exist", function()
    local id = h.new_id(64)
    shm.remove(id)
    assert_fails("shmctl", EINVAL, shm.stat(id))
  end)

  it("raises on bad arguments", function()
    for _, args in ipairs { {}, { "1" }, { -1 }, { 1.5 }, { {} }, { 1 << 40 } } do
      assert.has_error(function() shm.stat(table.unpack(args, 1, 1)) end)
    end
  end)
end)

describe("remove", function()
  it("removes an unattached segment at once", function()
    local id = h.new_id(64)
    assert.is_table(h.ipcs(id))
    assert.is_true(shm.remove(id))
    assert.is_nil(h.ipcs(id))
    assert_fails("shmctl", EINVAL, shm.stat(id))
  end)

  it("returns nil, message, EINVAL the second time", function()
    local id = h.new_id(64)
    assert.is_true(shm.remove(id))
    assert_fails("shmctl", EINVAL, shm.remove(id))
  end)

  it("raises on bad arguments", function()
    for _, args in ipairs { {}, { "1" }, { -1 }, { 1.5 }, { {} } } do
      assert.has_error(function() shm.remove(table.unpack(args, 1, 1)) end)
    end
  end)
end)

describe("shmget", function()
  it("creates with the flags and mode given", function()
    local id = h.track(shm.shmget(shm.IPC_PRIVATE, 128, shm.IPC_CREAT | tonumber("640", 8)))
    assert.equal("integer", math.type(id))
    local st = shm.stat(id)
    assert.equal(128, st.size)
    assert.equal(tonumber("640", 8), st.mode)
  end)

  it("honours IPC_EXCL and finds an existing key without IPC_CREAT", function()
    local key = fresh_key()
    local flags = shm.IPC_CREAT | shm.IPC_EXCL | tonumber("600", 8)
    local id = h.track(shm.shmget(key, 64, flags))
    assert.is_number(id)
    assert_fails("shmget", EEXIST, shm.shmget(key, 64, flags))
    assert.equal(id, shm.shmget(key, 0, 0))
    assert_fails("shmget", ENOENT, shm.shmget(fresh_key(), 0, 0))
  end)

  it("raises on bad arguments", function()
    local P = shm.IPC_PRIVATE
    for i, args in ipairs {
      {}, { P, 64 }, { P, 64, "512" }, { P, 64, 1.5 }, { P, -1, 0 }, { "0", 64, 0 },
      { P, 64, 1 << 40 },
    } do
      local ok, id = pcall(shm.shmget, table.unpack(args, 1, 3))
      if ok then h.track(id) end
      assert.is_false(ok, "case " .. i .. " did not raise")
    end
  end)
end)

describe("shmat", function()
  it("attaches read-write by default and read-only with SHM_RDONLY", function()
    local id = h.new_id(64)
    local rw = h.track_segment(shm.shmat(id))
    local rw0 = h.track_segment(shm.shmat(id, 0))
    local ro = h.track_segment(shm.shmat(id, shm.SHM_RDONLY))
    assert.equal("segment", shm.type(rw))
    assert.is_false(rw:readonly())
    assert.is_false(rw0:readonly())
    assert.is_true(ro:readonly())
    assert.equal(3, shm.stat(id).nattch)
    rw:write(0, "abc")
    assert.equal("abc", ro:read(0, 3))
    assert.error_matches(function() ro:write(0, "x") end, "read%-only")
  end)

  it("returns nil, message, EINVAL for an id that does not exist", function()
    local id = h.new_id(64)
    shm.remove(id)
    assert_fails("shmat", EINVAL, shm.shmat(id))
  end)

  it("raises on bad arguments", function()
    local id = h.new_id(64)
    for i, args in ipairs { {}, { "1" }, { -1 }, { id, "0" }, { id, 0.5 }, { id, {} } } do
      local ok, seg = pcall(shm.shmat, table.unpack(args, 1, 2))
      if ok then h.track_segment(seg) end
      assert.is_false(ok, "case " .. i .. " did not raise")
    end
  end)
end)

describe("shmdt", function()
  it("detaches and returns true; a second time gives nil, message, EINVAL", function()
    local id = h.new_id(64)
    local seg = h.attach(id)
    assert.equal(1, shm.stat(id).nattch)
    assert.is_true(shm.shmdt(seg))
    assert.equal(0, shm.stat(id).nattch)
    assert.equal("detached segment", shm.type(seg))
    assert_fails("shmdt", EINVAL, shm.shmdt(seg))
  end)

  it("raises for anything but a segment", function()
    for _, v in ipairs { 1, "x", {}, io.stdout, true } do
      assert.error_matches(function() shm.shmdt(v) end, "sysvshm.segment expected", 1, true)
    end
    assert.has_error(function() shm.shmdt() end)
  end)
end)

describe("shmctl", function()
  it("IPC_STAT gives the stat table", function()
    local id = h.new_id(64)
    assert.same(shm.stat(id), shm.shmctl(id, shm.IPC_STAT))
  end)

  it("IPC_SET changes the mode; fields left out keep their values", function()
    local id = h.new_id(64)
    local before = shm.stat(id)
    assert.is_true(shm.shmctl(id, shm.IPC_SET, { mode = tonumber("640", 8) }))
    local st = shm.stat(id)
    assert.equal(tonumber("640", 8), st.mode)
    assert.equal(before.uid, st.uid)
    assert.equal(before.gid, st.gid)
    assert.equal("640", h.ipcs(id).perms)
  end)

  it("IPC_SET changes the owner's uid and gid (as root) #env", function()
    if h.uid() ~= 0 then pending(h.env("needs root to give a segment away")) return end
    local id = h.new_id(64)
    assert.is_true(shm.shmctl(id, shm.IPC_SET, { uid = 65534, gid = 65534 }))
    local st = shm.stat(id)
    assert.equal(65534, st.uid)
    assert.equal(65534, st.gid)
    assert.equal(0, st.cuid)
    assert.equal(tonumber("600", 8), st.mode)
  end)

  it("IPC_SET raises on a missing table, unknown fields and bad values", function()
    local id = h.new_id(64)
    for i, t in ipairs {
      false, "mode", { foo = 1 }, { mode = "0640" }, { mode = 1.5 },
      { mode = tonumber("1000", 8) }, { mode = -1 }, { uid = -1 }, { gid = "0" },
    } do
      assert.is_false(pcall(shm.shmctl, id, shm.IPC_SET, t or nil), "case " .. i)
    end
    assert.equal(tonumber("600", 8), shm.stat(id).mode)
  end)

  it("IPC_RMID removes the segment", function()
    local id = h.new_id(64)
    assert.is_true(shm.shmctl(id, shm.IPC_RMID))
    assert.is_nil(h.ipcs(id))
    assert_fails("shmctl", EINVAL, shm.shmctl(id, shm.IPC_STAT))
  end)

  it("SHM_LOCK and SHM_UNLOCK set and clear the locked flag #env", function()
    local id = h.new_id(64)
    local ok, msg, en = shm.shmctl(id, shm.SHM_LOCK)
    if not ok and (en == shm.EPERM or en == shm.ENOMEM) then
      pending(h.env("SHM_LOCK refused here: " .. msg))
      return
    end
    assert.is_true(ok, msg)
    assert.is_true(shm.stat(id).locked)
    assert.is_true(shm.shmctl(id, shm.SHM_UNLOCK))
    assert.is_false(shm.stat(id).locked)
  end)

  it("raises on an unsupported command or bad arguments", function()
    local id = h.new_id(64)
    for i, args in ipairs {
      { id, 12345 }, { id, -1 }, { id, "2" }, { id }, { id, 1.5 }, { "1", shm.IPC_STAT },
      { -1, shm.IPC_STAT },
    } do
      assert.is_false(pcall(shm.shmctl, table.unpack(args, 1, 2)), "case " .. i)
    end
    assert.error_matches(function() shm.shmctl(id, 12345) end, "unsupported command")
    assert.is_table(h.ipcs(id))
  end)
end)

describe("sleep", function()
  it("returns true", function()
    assert.same({ true }, { shm.sleep(0) })
    assert.same({ true }, { shm.sleep(0.001) })
  end)

  it("raises on bad arguments", function()
    for i, args in ipairs { {}, { "x" }, { {} }, { -1 }, { -0.5 }, { 0 / 0 }, { math.huge } } do
      assert.is_false(pcall(shm.sleep, table.unpack(args, 1, 1)), "case " .. i)
    end
  end)
end)

describe("type", function()
  it("tells segments, detached segments and other values apart", function()
    local seg = h.attach(h.new_id(64))
    assert.equal("segment", shm.type(seg))
    seg:detach()
    assert.equal("detached segment", shm.type(seg))
    for _, v in ipairs { 1, "segment", {}, io.stdout, false } do
      assert.is_nil(shm.type(v))
    end
    assert.is_nil(shm.type(nil))
    assert.has_error(function() shm.type() end)
  end)
end)

-- Every module function called with every value of a fixed set at every
-- argument position (spec/support/sweep.lua).
require("support.sweep").describe("module")
