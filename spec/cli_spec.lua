-- shm.list() and the `sysvshm` command (bin/sysvshm, lua/sysvshm/cli.lua),
-- run as separate lua5.4 processes against segments each test creates (and
-- h.cleanup removes). Every run is checked for a traceback in its output.
--
-- `rm --mine-unattached` and `ls --mine` act on everything "mine": as root
-- that would take in the segments of whatever else runs as root here, so
-- those tests run the command as an otherwise unused uid (OTHER_UID) that
-- owns only what the test gives it; they are pending where that is not
-- possible (not root, no setpriv, checkout not readable by others).
local h = require "helpers"
local shm = h.shm

local CLI = "bin/sysvshm"
local RECORD = h.root .. "/lua/demo/record_layout.lua"
-- A uid no account has, different for each run, so that runs at the same
-- time never see each other's segments as "mine".
local OTHER_UID = 61000 + h.pid() % 4000
local AS_OTHER = ("setpriv --reuid=%d --regid=%d --clear-groups "):format(OTHER_UID, OTHER_UID)
local COMMANDS = { "ls", "stat", "dump", "watch", "dict", "rm", "new" }
local FIELDS = { "id", "key", "size", "mode", "uid", "gid", "cuid", "cgid", "cpid", "lpid",
                 "nattch", "atime", "dtime", "ctime", "removed", "locked" }

-- ---- running the command ------------------------------------------------------

local function words(args)
  local t = {}
  for i, a in ipairs(args) do t[i] = h.quote(a) end
  return table.concat(t, " ")
end

local function no_traceback(r)
  local all = (r.stdout .. r.stderr):lower()
  assert.is_nil(all:find("traceback", 1, true), "a traceback in the output: " .. h.explain(r))
  assert.is_nil(all:find("stack", 1, true), "a stack trace in the output: " .. h.explain(r))
end

-- Run `lua5.4 bin/sysvshm args...` from the checkout; `prefix` goes
-- before the interpreter (env settings, setpriv), `suffix` after the
-- arguments (redirections). Returns h.sh's result.
local function run(args, prefix, suffix)
  local r = h.sh(h.lua_env() .. (prefix or "") .. "lua5.4 " .. CLI .. " " .. words(args)
                 .. (suffix or ""))
  no_traceback(r)
  return r
end

local function ok(args, prefix)
  local r = run(args, prefix)
  assert.equal(0, r.code, h.explain(r))
  return r
end

local function lines(s)
  local t = {}
  for l in s:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- A bad command line: status 2, the message and the command's usage on
-- standard error, nothing on standard output.
local function assert_usage(r, cmd, pattern)
  assert.equal(2, r.code, h.explain(r))
  assert.equal("", r.stdout)
  assert.matches("^sysvshm" .. (cmd and " " .. cmd or "") .. ": ", r.stderr)
  assert.matches("\nusage: sysvshm" .. (cmd and " " .. cmd or "") .. " %[options%]", r.stderr)
  if pattern then assert.matches(pattern, r.stderr) end
end

-- Not possible: status 1, one line on standard error, no usage.
local function assert_fails(r, cmd, pattern)
  assert.equal(1, r.code, h.explain(r))
  assert.matches("^sysvshm " .. cmd .. ": ", r.stderr)
  assert.is_nil(r.stderr:find("usage:", 1, true), r.stderr)
  if pattern then assert.matches(pattern, r.stderr) end
end

-- ---- a tiny JSON decoder (enough for JSON lines of numbers and booleans, and
-- strings, arrays and objects for good measure) --------------------------------

local function json_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function fail(what) error(("bad JSON at %d (%s): %s"):format(pos, what, s), 0) end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string")
      elseif c == '"' then pos = pos + 1; return table.concat(out)
      elseif c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local simple = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
                         r = "\r", t = "\t" }
        if simple[e] then out[#out + 1] = simple[e]; pos = pos + 2
        elseif e == "u" then
          local hex = s:match("^%x%x%x%x", pos + 2) or fail("bad \\u escape")
          out[#out + 1] = utf8.char(tonumber(hex, 16)); pos = pos + 6
        else fail("bad escape") end
      elseif c:byte() < 32 then fail("control character in a string")
      else out[#out + 1] = c; pos = pos + 1 end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1; ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str(); ws()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value(); ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "}" then return t elseif d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1; ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value(); ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "]" then return t elseif d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif s:find("^true", pos) then pos = pos + 4; return true
    elseif s:find("^false", pos) then pos = pos + 5; return false
    elseif s:find("^null", pos) then pos = pos + 4; return nil
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos) or fail("unexpected character")
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  local v = value(); ws()
  if pos <= #s then fail("trailing characters") end
  return v
end

-- ---- fixtures ----------------------------------------------------------------------

local function oct(s) return math.tointeger(tonumber(s, 8)) end -- Lua has no octal literals

local function key_of(path, proj) return assert(shm.ftok(path, proj or 0x43)) end

local function hexkey(key) return ("0x%08x"):format(key & 0xffffffff) end

local function exists(id) return shm.stat(id) ~= nil end

-- A temporary Lua file with `src`, deleted by h.cleanup.
local function luafile(src)
  local path = h.tmpfile()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

-- Whether commands can run as OTHER_UID: true, or false and why not
-- (h.user_ok: root, setpriv, a checkout that other users can read).
local function other_ok()
  return h.user_ok(OTHER_UID, OTHER_UID)
end

-- ---- shm.list -------------------------------------------------------------------------

describe("shm.list", function()
  after_each(h.cleanup)

  local function find(id)
    local list = assert(shm.list())
    for _, st in ipairs(list) do
      if st.id == id then return st end
    end
  end

  it("lists a segment it creates, with the fields of stat and its id", function()
    local seg, id = h.new_segment(4096, { mode = oct"640" })
    seg:write(0, "x")
    local st = assert(find(id), "segment not listed")
    local want = assert(shm.stat(id))
    want.id = id
    assert.same(want, st)
    assert.equal(4096, st.size)
    assert.equal(oct"640", st.mode)
    assert.equal(1, st.nattch)
    assert.equal(h.pid(), st.cpid)
    assert.is_false(st.removed)
  end)

  it("gives every entry all the fields, with their types", function()
    h.new_id(64)
    local list = assert(shm.list())
    assert.is_true(#list >= 1)
    for _, st in ipairs(list) do
      for _, k in ipairs(FIELDS) do
        if k == "removed" or k == "locked" then
          assert.equal("boolean", type(st[k]), k)
        else
          assert.equal("integer", math.type(st[k]), k)
        end
      end
      local n = 0
      for _ in pairs(st) do n = n + 1 end
      assert.equal(#FIELDS, n)
    end
  end)

  it("shows a removed but attached segment as removed, until the last detach", function()
    local seg, id = h.new_segment(64)
    assert.is_true(shm.remove(id))
    local st = assert(find(id), "a removed but attached segment must still be listed")
    assert.is_true(st.removed)
    assert.equal(1, st.nattch)
    seg:detach()
    assert.is_nil(find(id))
  end)

  it("no longer lists a removed segment", function()
    local id = h.new_id(64)
    assert.is_not_nil(find(id))
    shm.remove(id)
    assert.is_nil(find(id))
  end)
end)

-- ---- the command ------------------------------------------------------------------------

describe("sysvshm", function()
  after_each(h.cleanup)

  describe("as a whole", function()
    it("shows its usage with --help and with help, status 0", function()
      local r = ok({ "--help" })
      assert.matches("^usage: sysvshm %[options%] COMMAND", r.stdout)
      for _, c in ipairs(COMMANDS) do
        assert.matches("\n  " .. c .. " +%S", r.stdout)
      end
      assert.equal("", r.stderr)
      assert.equal(r.stdout, ok({ "help" }).stdout)
    end)

    for _, c in ipairs(COMMANDS) do
      it("has --help on " .. c .. " (status 0, usage on standard output)", function()
        local r = ok({ c, "--help" })
        assert.matches("^usage: sysvshm " .. c .. " %[options%]", r.stdout)
        assert.matches("\noptions:\n", r.stdout)
        assert.matches("%-h, %-%-help", r.stdout)
        assert.equal("", r.stderr)
        assert.equal(r.stdout, ok({ "help", c }).stdout)
        assert.equal(r.stdout, ok({ c, "-h" }).stdout)
      end)

      it("refuses an unknown option of " .. c .. " with status 2 and the usage", function()
        assert_usage(run({ c, "--no-such-option" }), c, "unknown option %-%-no%-such%-option")
      end)
    end

    it("wants a command, and a known one (status 2, usage)", function()
      assert_usage(run({}), nil, "missing command")
      assert_usage(run({ "frobnicate" }), nil, "unknown command 'frobnicate'")
      assert_usage(run({ "help", "frobnicate" }), nil, "unknown command 'frobnicate'")
      assert_usage(run({ "--bogus" }), nil, "unknown option")
    end)

    it("prints the module's version", function()
      assert.equal(shm._VERSION .. "\n", ok({ "--version" }).stdout)
    end)

    it("runs from anywhere without LUA_PATH_5_4, as bin/sysvshm and as lua5.4 bin/sysvshm", function()
      for _, lua in ipairs { "", "lua5.4 " } do
        local r = h.sh("cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH -u LUA_CPATH -u LUA_INIT "
                       .. lua .. h.quote(h.root .. "/bin/sysvshm") .. " --version")
        assert.equal(0, r.code, h.explain(r))
        assert.equal(shm._VERSION .. "\n", r.stdout)
      end
    end)

    it("reports a bug in one line with status 70, the traceback only with SYSVSHM_DEBUG", function()
      -- A broken sysvshm module stands in for a bug.
      local broken = h.quote([[package.loaded.sysvshm = setmetatable({}, {__index = function(_, k)
        if k == "list" then error("boom") end end})]])
      local cmd = h.lua_env() .. "lua5.4 -e " .. broken .. " " .. CLI .. " ls"
      local r = h.sh(cmd)
      no_traceback(r)
      assert.equal(70, r.code, h.explain(r))
      assert.matches("^sysvshm ls: internal error: .*boom", r.stderr)
      assert.equal(1, #lines(r.stderr))
      r = h.sh(h.lua_env() .. "SYSVSHM_DEBUG=1 lua5.4 -e " .. broken .. " " .. CLI .. " ls")
      assert.equal(70, r.code, h.explain(r))
      assert.matches("stack traceback", r.stderr)
    end)
  end)

  describe("ls", function()
    it("shows a segment as ipcs -m does, and its removal", function()
      local seg, id = h.new_segment(4096, { mode = oct"640" })
      local r = ok({ "ls" })
      local out = lines(r.stdout)
      assert.matches("^KEY +ID +OWNER +MODE +SIZE +NATTCH +CPID +LPID +STATUS$", out[1])
      local row
      for _, l in ipairs(out) do
        local f = {}
        for w in l:gmatch("%S+") do f[#f + 1] = w end
        if f[2] == tostring(id) then row = f end
      end
      assert.is_not_nil(row, r.stdout)
      local owner = h.sh("id -un").stdout:gsub("\n", "")
      local ipcs = h.ipcs(id)
      assert.same({ ipcs and ipcs.key or "0x00000000", tostring(id), owner, "rw-r-----", "4.0K", "1",
                    tostring(h.pid()), tostring(h.pid()), "-" }, row)
      shm.remove(id)
      r = ok({ "ls" })
      assert.matches("\n0x%x+ +" .. id .. " .- removed\n", r.stdout)
      seg:detach()
      assert.is_nil(ok({ "ls" }).stdout:find(" " .. id .. " ", 1, true))
    end)

    it("writes JSON lines that parse, one per segment, with every field", function()
      local _, id = h.new_segment(100, { mode = oct"604" })
      local r = ok({ "ls", "--json" })
      local found
      for _, l in ipairs(lines(r.stdout)) do
        local t = json_decode(l)
        for _, k in ipairs(FIELDS) do
          assert.is_not_nil(t[k], "field " .. k .. " missing in " .. l)
        end
        if t.id == id then found = t end
      end
      assert.is_not_nil(found, r.stdout)
      local want = assert(shm.stat(id))
      want.id = id
      assert.same(want, found)
      assert.equal(oct"604", found.mode)
      assert.equal(100, found.size)
    end)

    it("--mine lists only the segments of this user #env", function()
      local can, why = other_ok()
      if not can then pending(h.env(why)) return end
      local root_id = h.new_id(64)
      local r = run({ "new", "--size", "64" }, AS_OTHER)
      assert.equal(0, r.code, h.explain(r))
      local mine = h.track(math.tointeger(tonumber(r.stdout)))
      r = run({ "ls", "--mine", "--json" }, AS_OTHER)
      assert.equal(0, r.code, h.explain(r))
      local ids = {}
      for _, l in ipairs(lines(r.stdout)) do
        local t = json_decode(l)
        assert.is_true(t.uid == OTHER_UID or t.cuid == OTHER_UID, l)
        ids[#ids + 1] = t.id
      end
      assert.same({ mine }, ids)
      -- the owner has no name: the table shows the uid
      r = run({ "ls", "--mine" }, AS_OTHER)
      assert.matches("\n0x%x+ +" .. mine .. " +" .. OTHER_UID .. " +rw%-%-%-%-%-%-%- ", r.stdout)
      -- and root's view includes both
      local all = ok({ "ls", "--json" }).stdout
      assert.matches('"id":' .. root_id .. ",", all)
      assert.matches('"id":' .. mine .. ",", all)
    end)
  end)

  describe("stat", function()
    it("shows every field, the numbers readable too", function()
      local seg, id = h.new_segment(8192, { mode = oct"640" })
      local st = assert(shm.stat(id))
      local r = ok({ "stat", tostring(id) })
      local got = {}
      for _, l in ipairs(lines(r.stdout)) do
        local k, v = l:match("^(%S+)%s+(.*)$")
        got[k] = v
      end
      for _, k in ipairs(FIELDS) do assert.is_not_nil(got[k], "no line for " .. k) end
      assert.equal(tostring(id), got.id)
      assert.equal("0x00000000 (IPC_PRIVATE)", got.key)
      assert.equal("8192 (8.0K)", got.size)
      assert.equal("0640 (rw-r-----)", got.mode)
      assert.equal(tostring(st.cpid), got.cpid)
      assert.equal("1", got.nattch)
      assert.equal("0 (never)", got.dtime)
      assert.equal(("%d (%s)"):format(st.atime, os.date("%Y-%m-%d %H:%M:%S", st.atime)), got.atime)
      assert.equal(("%d (%s)"):format(h.uid(), (h.sh("id -un").stdout:gsub("\n", ""))), got.uid)
      assert.equal("false", got.removed)
      assert.equal("false", got.locked)
      seg:detach()
      assert.matches("\ndtime +%d+ %(%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%)\n",
                     ok({ "stat", tostring(id) }).stdout)
    end)

    it("finds a segment by key, decimal or hex, and writes JSON", function()
      local key = key_of(h.tmpfile())
      local id = h.track(assert(shm.create(key, 64)))
      -- --no-peek: without it each stat attaches for a moment, which changes
      -- the next one's atime, dtime and lpid (spec/cli_dict_spec.lua)
      local by_id = ok({ "stat", "--no-peek", tostring(id) }).stdout
      assert.equal(by_id, ok({ "stat", "--no-peek", "--key", tostring(key) }).stdout)
      assert.equal(by_id, ok({ "stat", "-n", "--key", hexkey(key) }).stdout)
      assert.matches("\nkey +" .. hexkey(key) .. "\n", by_id)
      local t = json_decode(ok({ "stat", "--json", "--no-peek", tostring(id) }).stdout)
      local want = assert(shm.stat(id))
      want.id = id
      assert.same(want, t)
    end)

    it("fails with status 1 and the system's message for a segment that is not there", function()
      local id = h.new_id(64)
      shm.remove(id)
      assert_fails(run({ "stat", tostring(id) }), "stat", "no segment with id " .. id .. " %(shmctl: ")
      local key = key_of(h.tmpfile())
      assert_fails(run({ "stat", "--key", tostring(key) }), "stat",
                   "no segment with key " .. hexkey(key) .. " %(shmget: No such file or directory%)")
    end)

    it("wants exactly one of ID and --key, and a valid one (status 2)", function()
      assert_usage(run({ "stat" }), "stat", "give a segment id or %-%-key")
      assert_usage(run({ "stat", "1", "--key", "5" }), "stat", "not both")
      assert_usage(run({ "stat", "abc" }), "stat", "'abc' is not a segment id")
      assert_usage(run({ "stat", "99999999999" }), "stat", "is not a segment id")
      assert_usage(run({ "stat", "1", "2" }), "stat", "unexpected argument '2'")
      assert_usage(run({ "stat", "--key", "0x100000000" }), "stat", "32%-bit key")
      assert_usage(run({ "stat", "--key", "zz" }), "stat", "not an integer")
    end)
  end)

  describe("dump", function()
    local function xxd_available() return h.sh("command -v xxd").ok end

    it("shows bytes in hex and ASCII as xxd does, from --offset for --length", function()
      local seg, id = h.new_segment(64)
      local data = "Hello, world!\0\1\2\255\127 ~"
      seg:write(16, data)
      local r = ok({ "dump", tostring(id), "--offset", "16", "--length", "20" })
      assert.equal("00000010: 4865 6c6c 6f2c 2077 6f72 6c64 2100 0102  Hello, world!...\n"
                   .. "00000020: ff7f 207e                                .. ~\n", r.stdout)
    end)

    it("shows what xxd shows, byte for byte #env", function()
      if not xxd_available() then pending(h.env("xxd not found (Debian package xxd)")) return end
      local seg, id = h.new_segment(64)
      seg:write(16, "Hello, world!\0\1\2\255\127 ~")
      local file = h.tmpfile()
      local f = assert(io.open(file, "wb"))
      f:write(seg:read(0))
      f:close()
      assert.equal(h.sh("xxd " .. file).stdout, ok({ "dump", tostring(id) }).stdout)
      assert.equal(h.sh("xxd -s 5 -l 30 " .. file).stdout,
                   ok({ "dump", tostring(id), "-o", "5", "-n", "30" }).stdout)
    end)

    it("dumps the whole segment by default, stops at its end, and shows nothing at the end", function()
      local _, id = h.new_segment(40)
      assert.equal(3, #lines(ok({ "dump", tostring(id) }).stdout))
      assert.equal(1, #lines(ok({ "dump", tostring(id), "--offset", "32", "--length", "100" }).stdout))
      assert.equal("", ok({ "dump", tostring(id), "--offset", "40" }).stdout)
      assert_fails(run({ "dump", tostring(id), "--offset", "41" }), "dump", "past the end")
    end)

    it("attaches read-only (a read-only user can dump) #env", function()
      local can, why = other_ok()
      if not can then pending(h.env(why)) return end
      local seg, id = h.new_segment(32, { mode = oct"444" })
      seg:write(0, "readable")
      local r = run({ "dump", tostring(id), "--length", "8" }, AS_OTHER)
      assert.equal(0, r.code, h.explain(r))
      assert.matches("^00000000: 7265 6164 6162 6c65 +readable\n$", r.stdout)
      -- without read permission the system refuses: status 1 and its message
      assert.is_true(shm.shmctl(id, shm.IPC_SET, { mode = oct"200" }))
      assert_fails(run({ "dump", tostring(id) }, AS_OTHER), "dump", "shmat: Permission denied")
    end)

    it("fails with status 1 for a segment that is not there", function()
      local id = h.new_id(64)
      shm.remove(id)
      assert_fails(run({ "dump", tostring(id) }), "dump", "no segment with id " .. id)
    end)

    it("refuses a bad command line with status 2", function()
      assert_usage(run({ "dump" }), "dump", "missing argument")
      assert_usage(run({ "dump", "x1" }), "dump", "is not a segment id")
      assert_usage(run({ "dump", "1", "--offset", "-1" }), "dump", "at least 0")
      assert_usage(run({ "dump", "1", "--length", "ten" }), "dump", "not an integer")
      assert_usage(run({ "dump", "1", "--struct", "record" }), "dump", "%-%-struct needs %-%-layout")
      assert_usage(run({ "dump", "1", "--layout", RECORD, "--length", "8" }), "dump",
                   "%-%-length does not go with %-%-layout")
    end)

    describe("with a layout", function()
      local function record_segment()
        local R = dofile(RECORD).record
        local seg, id = h.new_segment(4096)
        local v = R:view(seg, 0)
        v.magic = 0xdeadbeef
        v.version = 3
        v.count = -5
        v.name = 'say "hi"\n'
        v.samples = { 0.5, 1.25 }
        v.origin = { x = 1.5, y = -2 }
        v.path[2].y = 3.25
        return seg, id, R
      end

      it("shows one line per field: offset, C type, name, value", function()
        local _, id, R = record_segment()
        local r = ok({ "dump", tostring(id), "--layout", RECORD, "--struct", "record" })
        local out = lines(r.stdout)
        assert.matches("^OFFSET +TYPE +FIELD +VALUE$", out[1])
        local want = {
          { 0, "uint32_t", "magic", "3735928559" },
          { 4, "uint16_t", "version", "3" },
          { 6, "uint16_t", "flags", "0" },
          { 8, "int64_t", "count", "-5" },
          { 16, "char[16]", "name", [["say \"hi\"\x0a"]] },
          { 32, "double[8]", "samples", "[0.5, 1.25, 0.0 (x6)]" },
          { 96, "double", "origin.x", "1.5" },
          { 104, "double", "origin.y", "-2.0" },
          { 112, "double", "path[1].x", "0.0" },
          { 120, "double", "path[1].y", "0.0" },
          { 128, "double", "path[2].x", "0.0" },
          { 136, "double", "path[2].y", "3.25" },
        }
        assert.equal(#want + 1, #out, r.stdout)
        for i, w in ipairs(want) do
          local off, ty, name, value = out[i + 1]:match("^%s*(%d+)  (%S+)%s+(%S+)%s+(.-)$")
          assert.same(w, { tonumber(off), ty, name, value }, out[i + 1])
          assert.equal(R:offset(name), tonumber(off))
        end
      end)

      it("reads the struct at --offset, and fails when it does not fit or is misaligned", function()
        local seg, id, R = record_segment()
        R:write(seg, 256, { magic = 7, name = "second" })
        local r = ok({ "dump", tostring(id), "-l", RECORD, "-s", "record", "-o", "256" })
        assert.matches("\n +256  uint32_t +magic +7\n", r.stdout)
        assert.matches("\n +272  char%[16%] +name +\"second\"\n", r.stdout)
        assert_fails(run({ "dump", tostring(id), "-l", RECORD, "-s", "record", "-o", "4000" }), "dump",
                     "does not fit in segment " .. id)
        assert_fails(run({ "dump", tostring(id), "-l", RECORD, "-s", "record", "-o", "4" }), "dump",
                     "not a multiple of the struct's alignment %(8%)")
      end)

      it("shows unsigned 64-bit values unsigned, and long arrays cut unless --full", function()
        local file = luafile([[
          local layout = require "sysvshm.layout"
          return layout.struct({ {"big", "I8"}, {"many", "i4", 40}, {"words", "c4", 3} }, "t")]])
        local seg, id = h.new_segment(512)
        seg:pack("=i8", 0, -1)
        for i = 1, 40 do seg:pack("=i4", 8 + 4 * (i - 1), i) end
        seg:write(168, "ab\0\0cdefgh\0\0")
        local r = ok({ "dump", tostring(id), "--layout", file })
        assert.matches("\n +0  uint64_t +big +18446744073709551615\n", r.stdout)
        assert.matches("many +%[1, 2, 3, .-, 16, %.%.%. 24 more%]\n", r.stdout)
        assert.matches('words +%["ab", "cdef", "gh"%]\n', r.stdout)
        r = ok({ "dump", tostring(id), "--layout", file, "--full" })
        assert.matches("many +%[1, 2, .-, 39, 40%]\n", r.stdout)
      end)

      it("takes a file of one layout, and picks from several with --struct", function()
        local _, id = record_segment()
        local one = luafile([[return require("sysvshm.layout").struct({{"magic", "I4"}}, "m")]])
        assert.matches("magic +3735928559\n$", ok({ "dump", tostring(id), "--layout", one }).stdout)
        assert.matches("magic +3735928559\n$",
                       ok({ "dump", tostring(id), "--layout", one, "--struct", "m" }).stdout)
        assert_fails(run({ "dump", tostring(id), "--layout", one, "--struct", "other" }), "dump",
                     "returns struct m, not other")
        assert_fails(run({ "dump", tostring(id), "--layout", RECORD }), "dump",
                     "several structs, choose one with %-%-struct %(point, record%)")
        assert_fails(run({ "dump", tostring(id), "--layout", RECORD, "--struct", "nope" }), "dump",
                     "has no struct 'nope' %(it has: point, record%)")
        local r = ok({ "dump", tostring(id), "--layout", RECORD, "--struct", "point" })
        assert.equal(3, #lines(r.stdout))
      end)

      it("says what is wrong with a broken layout file (status 1)", function()
        local _, id = record_segment()
        local cases = {
          { "return {", "cannot load the layout file: .*expected" },
          { "error('no good')", "failed: .*no good" },
          { "return 42", "must return a layout or a table of named layouts, not a number" },
          { "return {x = 1}", "without any layout" },
          { [[return require("sysvshm.layout").struct({{"x", "q"}})]], "unsupported field type 'q'" },
          -- issue 10 item 7: a struct whose size wrapped around to 0 gave status 70
          { [[return require("sysvshm.layout").struct({{"a", "i8", 1 << 61}})]], "too large" },
          { [[return require("sysvshm.layout").struct({{"a", "c9223372036854775807"}, {"b", "i1"}})]],
            "too large" },
        }
        for _, c in ipairs(cases) do
          assert_fails(run({ "dump", tostring(id), "--layout", luafile(c[1]) }), "dump", c[2])
        end
        assert_fails(run({ "dump", tostring(id), "--layout", "/nonexistent/layout.lua" }), "dump",
                     "cannot load the layout file: cannot open /nonexistent/layout.lua")
      end)
    end)
  end)

  describe("watch", function()
    local function counter_segment()
      local file = luafile([[
        local layout = require "sysvshm.layout"
        return layout.struct({ {"count", "i8"}, {"name", "c8"}, {"temps", "f", 3} }, "stats")]])
      local seg, id = h.new_segment(64)
      seg:pack("=i8", 0, 41)
      seg:write(8, "steady")
      return seg, id, file
    end

    it("shows --frames N frames, then stops; plain frames when not on a terminal", function()
      local _, id, file = counter_segment()
      local r = ok({ "watch", tostring(id), "--layout", file, "--frames", "2", "--interval", "0.05" })
      assert.is_nil(r.stdout:find("\27", 1, true), "no escape sequences off a terminal")
      local frames = {}
      for frame in (r.stdout .. "\n"):gmatch("(.-\n)\n") do frames[#frames + 1] = frame end
      assert.equal(2, #frames, r.stdout)
      for i, frame in ipairs(frames) do
        local out = lines(frame)
        assert.matches("^segment " .. id .. ", struct stats at offset 0, frame " .. i .. ", ", out[1])
        assert.matches("^  OFFSET +TYPE +FIELD +VALUE$", out[2])
        assert.matches("^   +0  int64_t +count +41$", out[3])
        assert.matches('^   +8  char%[8%] +name +"steady"$', out[4])
        assert.matches("^  +16  float%[3%] +temps +%[0%.0 %(x3%)%]$", out[5])
        assert.equal(5, #out)
      end
    end)

    it("marks the fields that changed since the last frame", function()
      local seg, id, file = counter_segment()
      local errfile = h.tmpfile()
      local p = assert(io.popen(h.lua_env() .. "lua5.4 " .. CLI .. " " .. words {
        "watch", tostring(id), "--layout", file, "--frames", "3", "--interval", "1" }
        .. " 2>" .. h.quote(errfile)))
      local first = {}
      for _ = 1, 5 do first[#first + 1] = p:read("l") end -- frame 1, read as it comes
      seg:pack("=i8", 0, 42)                                -- before frame 2
      local rest = p:read("a")
      local okk, how, code = p:close()
      local f = io.open(errfile)
      local err = f:read("a")
      f:close()
      assert.is_true(okk, ("%s %s: %s"):format(how, code, err))
      assert.matches("frame 1,", first[1])
      assert.matches("^  +0  int64_t +count +41$", first[3])
      -- then a blank line and frame 2, a blank line and frame 3
      local out = lines(rest)
      assert.equal(12, #out, rest)
      assert.equal("", out[1])
      assert.equal("", out[7])
      local frames = { { table.unpack(out, 2, 6) }, { table.unpack(out, 8, 12) } }
      assert.matches("frame 2,", frames[1][1])
      assert.matches("^%* +0  int64_t +count +42$", frames[1][3])
      assert.matches("^  +8  char", frames[1][4])
      assert.matches("^  +0  int64_t +count +42$", frames[2][3]) -- unchanged since frame 2
    end)

    it("stops on Ctrl-C with status 0", function()
      local _, id, file = counter_segment()
      local out = h.tmpfile()
      local script = table.concat({
        h.lua_env() .. "lua5.4 " .. CLI .. " " .. words {
          "watch", tostring(id), "--layout", file, "--frames", "100", "--interval", "0.1" }
          .. " >" .. h.quote(out) .. " 2>&1 & pid=$!",
        "i=0; while ! grep -q 'frame 1,' " .. h.quote(out) .. " && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done",
        "kill -INT $pid", "wait $pid", "echo status=$?",
      }, "\n")
      local r = h.sh(script)
      local f = io.open(out)
      local text = f:read("a")
      f:close()
      assert.matches("status=0\n$", r.stdout, h.explain(r) .. text)
      assert.is_nil(text:find("frame 100,", 1, true), "Ctrl-C did not stop it")
      assert.is_nil(text:lower():find("traceback", 1, true), text)
    end)

    it("redraws in place on a terminal #env", function()
      if not h.sh("command -v script").ok then pending(h.env("script(1) not found")) return end
      local _, id, file = counter_segment()
      local cmd = h.lua_env() .. "TERM=xterm lua5.4 " .. CLI .. " " .. words {
        "watch", tostring(id), "--layout", file, "--frames", "2", "--interval", "0.05" }
      local r = h.sh("script -qec " .. h.quote(cmd) .. " /dev/null </dev/null")
      if not r.ok and r.stdout == "" then pending(h.env("no pseudo-terminal here: " .. h.explain(r))) return end
      assert.equal(0, r.code, h.explain(r))
      local _, clears = r.stdout:gsub("\27%[H\27%[2J", "")
      assert.equal(2, clears, r.stdout)
    end)

    it("wants --layout and a segment (status 2, then 1)", function()
      local seg, id, file = counter_segment()
      assert_usage(run({ "watch", tostring(id) }), "watch", "needs %-%-layout")
      assert_usage(run({ "watch" }), "watch", "missing argument")
      assert_usage(run({ "watch", tostring(id), "--layout", file, "--frames", "0" }), "watch", "at least 1")
      assert_usage(run({ "watch", tostring(id), "--layout", file, "--interval", "x" }), "watch",
                   "not a number")
      seg:detach()
      shm.remove(id)
      assert_fails(run({ "watch", tostring(id), "--layout", file, "--frames", "1" }), "watch",
                   "no segment with id " .. id)
    end)
  end)

  describe("rm", function()
    it("removes segments by id and says how many went", function()
      local a, b = h.new_id(64), h.new_id(64)
      local r = ok({ "rm", tostring(a), tostring(b) })
      assert.equal(("removed 2 segments: %d %d\n"):format(a, b), r.stdout)
      assert.is_false(exists(a))
      assert.is_false(exists(b))
    end)

    it("removes a segment by key", function()
      local key = key_of(h.tmpfile())
      local id = h.track(assert(shm.create(key, 64)))
      assert.equal(("removed 1 segment: %d\n"):format(id), ok({ "rm", "--key", hexkey(key) }).stdout)
      assert.is_false(exists(id))
      assert_fails(run({ "rm", "--key", hexkey(key) }), "rm", "no segment with key")
    end)

    it("marks an attached segment removed; it goes at the last detach", function()
      local seg, id = h.new_segment(64)
      ok({ "rm", tostring(id) })
      assert.is_true(shm.stat(id).removed)
      seg:detach()
      assert.is_false(exists(id))
    end)

    it("removes what it can, counts it, and fails with status 1 for the rest", function()
      local gone = h.new_id(64)
      shm.remove(gone)
      local id = h.new_id(64)
      local r = run({ "rm", tostring(gone), tostring(id) })
      assert.equal(1, r.code, h.explain(r))
      assert.equal(("removed 1 segment: %d\n"):format(id), r.stdout)
      assert.matches("^sysvshm rm: no segment with id " .. gone .. " %(shmctl: ", r.stderr)
      assert.is_false(exists(id))
    end)

    it("--dry-run removes nothing", function()
      local id = h.new_id(64)
      assert.equal(("would remove 1 segment: %d\n"):format(id), ok({ "rm", "-n", tostring(id) }).stdout)
      assert.is_true(exists(id))
    end)

    it("--mine-unattached removes this user's segments that nothing has attached #env", function()
      local can, why = other_ok()
      if not can then pending(h.env(why)) return end
      local root_id = h.new_id(64)
      local ids = {}
      for i = 1, 3 do
        local r = run({ "new", "--size", "64" }, AS_OTHER)
        assert.equal(0, r.code, h.explain(r))
        ids[i] = h.track(math.tointeger(tonumber(r.stdout)))
      end
      local held = h.attach(ids[2]) -- root attaches one of them: it must stay
      local r = run({ "rm", "--mine-unattached", "--dry-run" }, AS_OTHER)
      assert.equal(0, r.code, h.explain(r))
      assert.equal(("would remove 2 segments: %d %d\n"):format(ids[1], ids[3]), r.stdout)
      r = run({ "rm", "--mine-unattached" }, AS_OTHER)
      assert.equal(0, r.code, h.explain(r))
      assert.equal(("removed 2 segments: %d %d\n"):format(ids[1], ids[3]), r.stdout)
      assert.is_false(exists(ids[1]))
      assert.is_true(exists(ids[2]))
      assert.is_false(exists(ids[3]))
      assert.is_true(exists(root_id))
      assert.equal(64, #held) -- (and the reference keeps it from the collector till here)
      r = run({ "rm", "--mine-unattached" }, AS_OTHER)
      assert.equal("removed 0 segments\n", r.stdout)
    end)

    it("wants exactly one way of naming segments (status 2)", function()
      assert_usage(run({ "rm" }), "rm", "none given")
      assert_usage(run({ "rm", "1", "--key", "5" }), "rm", "only one of them")
      assert_usage(run({ "rm", "--key", "5", "--mine-unattached" }), "rm", "only one of them")
      assert_usage(run({ "rm", "12", "x" }), "rm", "'x' is not a segment id")
    end)
  end)

  describe("new", function()
    it("creates a segment and prints its id alone", function()
      local r = ok({ "new", "--size", "4096" })
      assert.matches("^%d+\n$", r.stdout)
      local id = h.track(math.tointeger(tonumber(r.stdout)))
      local st = assert(shm.stat(id))
      assert.equal(4096, st.size)
      assert.equal(oct"600", st.mode)
      assert.equal(shm.IPC_PRIVATE, st.key)
      assert.equal(0, st.nattch)
    end)

    it("takes a key, a mode (octal or rw-r-----) and sizes with units", function()
      local key = key_of(h.tmpfile())
      local r = ok({ "new", "--size", "2K", "--key", hexkey(key), "--mode", "0640" })
      local id = h.track(math.tointeger(tonumber(r.stdout)))
      local st = assert(shm.stat(id))
      assert.same({ 2048, oct"640", key }, { st.size, st.mode, st.key })
      assert.equal(id, shm.open(key))
      r = ok({ "new", "--size", "1M", "--mode", "rw-r--r--" })
      st = assert(shm.stat(h.track(math.tointeger(tonumber(r.stdout)))))
      assert.same({ 1024 * 1024, oct"644" }, { st.size, st.mode })
    end)

    it("fails with status 1 when the key is taken, or the system refuses the size", function()
      local key = key_of(h.tmpfile())
      h.track(assert(shm.create(key, 64)))
      assert_fails(run({ "new", "--size", "64", "--key", tostring(key) }), "new", "shmget: File exists")
      assert_fails(run({ "new", "--size", "1024T" }), "new", "shmget: ")
    end)

    it("refuses a bad command line with status 2", function()
      assert_usage(run({ "new" }), "new", "%-%-size is required")
      assert_usage(run({ "new", "--size", "0" }), "new", "is not a size")
      assert_usage(run({ "new", "--size", "ten" }), "new", "is not a size")
      assert_usage(run({ "new", "--size", "64", "--mode", "0800" }), "new", "is not a mode")
      assert_usage(run({ "new", "--size", "64", "--mode", "rwxrwxrwxr" }), "new", "is not a mode")
      assert_usage(run({ "new", "--size", "64", "--key", "-0x80000001" }), "new", "32%-bit key")
      assert_usage(run({ "new", "--size", "64", "extra" }), "new", "unexpected argument")
    end)
  end)

  -- Issue 10 item 8: `new --size 4K > /dev/full` exited 0 and the segment
  -- leaked. Every command's output going to /dev/full (or a closed
  -- descriptor) must give status 1 and one line saying so, never 0 or 70.
  describe("dict", function()
    local dict = require "sysvshm.dict"
    local channel = require "sysvshm.channel"

    -- A dictionary with one value of each type, keys of 1 to 20 bytes (both
    -- loops of the hash), flags, a TTL, an expired entry, a key that is not
    -- UTF-8 and a long string.
    local function filled(size)
      local seg, id = h.new_segment(size or 65536)
      local d = dict.new(seg)
      assert(d:set("b", true))
      assert(d:set("int8byte", math.mininteger))
      assert(d:set("float9byte", -0.1, 0, 3))
      assert(d:set("string-sixteen-b", "hello\nworld", 120, 7))
      assert(d:set("list-seventeen-by", 1))
      assert(d:delete("list-seventeen-by"))
      assert(d:rpush("list-seventeen-by", "j1"))
      assert(d:rpush("list-seventeen-by", 2.5))
      assert(d:set("twenty-bytes-of-keys", ("x"):rep(100)))
      assert(d:set("\255\0bin", "\1\255"))
      assert(d:set("soon", 1, 0.001))
      shm.sleep(0.01) -- "soon" has expired (not reclaimed: still listed)
      return seg, id, d
    end

    -- The rows of the table (cells split on two or more blanks), and the summary.
    local function table_of(out)
      local ls = lines(out)
      local rows = {}
      for i = 2, #ls - 1 do
        local row = {}
        for cell in (ls[i] .. "  "):gmatch("(.-)  +") do row[#row + 1] = cell end
        rows[#rows + 1] = row
      end
      return ls[1], rows, ls[#ls]
    end

    local function quoted(s)
      return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
        return c == '"' and '\\"' or c == "\\" and "\\\\" or ("\\x%02x"):format(c:byte())
      end) .. '"'
    end

    local function stats_line(s)
      return ("%d entries, %d bytes used, %d free (largest value %d), capacity %d; evictions %d, "
              .. "expirations %d, contention %d, repairs %d"):format(s.entries, s.used, s.free,
              s.largest, s.capacity, s.evictions, s.expirations, s.contention, s.repairs)
    end

    it("lists every entry as the module reads it, sorted by key, then d:stats()", function()
      local _, id, d = filled()
      local r = ok({ "dict", tostring(id) })
      assert.equal("", r.stderr)
      local head, rows, summary = table_of(r.stdout)
      assert.matches("^KEY +TYPE +SIZE +FLAGS +TTL +VALUE$", head)
      local keys = d:get_keys(0)
      table.sort(keys)
      table.insert(keys, 4, "soon") -- expired: get_keys leaves it out, the listing shows it
      table.sort(keys)
      assert.equal(#keys, #rows, r.stdout)
      local types = { boolean = "boolean", string = "string", number = "?" }
      for i, k in ipairs(keys) do
        local row = rows[i]
        assert.equal(quoted(k), row[1])
        local v, flags = d:get(k)
        local ttl = d:ttl(k)
        if k == "soon" then
          assert.same({ "integer", "8", "0", "expired", "1" }, { row[2], row[3], row[4], row[5], row[6] })
        elseif k == "list-seventeen-by" then
          assert.equal(2, d:llen(k))
          -- u32 count, then (u8, u32 len, 2 bytes) and (u8, 8 bytes)
          assert.same({ "list", tostring(4 + 7 + 9), "0", "-", "[2 items]" },
                      { row[2], row[3], row[4], row[5], row[6] })
        else
          local t = math.type(v) or types[type(v)]
          assert.equal(t, row[2], k)
          local size = type(v) == "string" and #v or type(v) == "boolean" and 1 or 8
          assert.equal(tostring(size), row[3])
          assert.equal(tostring(flags or 0), row[4])
          if ttl == 0 then
            assert.equal("-", row[5])
          else
            local shown = tonumber(row[5])
            assert.is_true(shown >= ttl - 1 and shown <= ttl + 1, row[5] .. " vs " .. ttl)
          end
          local want = type(v) == "string" and (#v > 40 and quoted(v:sub(1, 40)) .. "... (100 bytes)"
                                                or quoted(v))
                       or t == "float" and ("%.17g"):format(v) or tostring(v)
          assert.equal(want, row[6])
        end
      end
      assert.equal(stats_line(d:stats()), summary)
      assert.matches('"twenty%-bytes%-of%-keys" +string +100 +0 +%- +"' .. ("x"):rep(100) .. '"\n',
                     ok({ "dict", tostring(id), "--full" }).stdout)
    end)

    it("lists an empty dictionary, and one at --offset in a region of a given size", function()
      local seg, id = h.new_segment(65536)
      local d = dict.new(seg, 8192, 16384)
      local r = ok({ "dict", tostring(id), "--offset", "8192" })
      local head, rows, summary = table_of(r.stdout)
      assert.equal("KEY  TYPE  SIZE  FLAGS  TTL  VALUE", head)
      assert.same({}, rows)
      assert.equal(stats_line(d:stats()), summary)
      assert.matches("^0 entries, 0 bytes used, %d+ free %(largest value %d+%), capacity 16384;", summary)
      d:set("k", "v")
      assert.matches('\n"k" +string +1 +0 +%- +"v"\n',
                     ok({ "dict", tostring(id), "-o", "8192" }).stdout)
    end)

    it("only reads: the region is the same byte for byte after a listing", function()
      local seg, id, d = filled()
      d:get("b") -- a read to replay: a listing must not replay or record any
      local before = seg:read(0)
      ok({ "dict", tostring(id) })
      ok({ "dict", tostring(id), "--json" })
      assert.equal(before, seg:read(0))
      assert.is_nil(d:check())
    end)

    it("attaches read-only (a read-only user can list it) #env", function()
      local can, why = other_ok()
      if not can then pending(h.env(why)) return end
      local seg, id = h.new_segment(16384, { mode = oct"444" })
      dict.new(seg):set("k", 42)
      local r = run({ "dict", tostring(id) }, AS_OTHER)
      assert.equal(0, r.code, h.explain(r))
      assert.matches('\n"k" +integer +8 +0 +%- +42\n', r.stdout)
    end)

    it("writes one JSON object: the entries as the module reads them, and d:stats()", function()
      local _, id, d = filled()
      local t = json_decode(ok({ "dict", tostring(id), "--json" }).stdout)
      assert.equal(id, t.id)
      assert.equal(0, t.offset)
      assert.equal(1, t.version)
      assert.is_true(t.consistent)
      assert.same({}, t.problems)
      assert.same(d:stats(), t.stats)
      local by = {}
      for _, e in ipairs(t.entries) do by[e.key or e.key_hex] = e end
      local n = 0
      for _ in pairs(by) do n = n + 1 end
      assert.equal(#d:get_keys(0) + 1, n) -- and "soon", expired
      for _, k in ipairs(d:get_keys(0)) do
        local e = assert(by[utf8.len(k) and k or "ff0062696e"], k)
        assert.equal(d:version(k), e.version)
        assert.is_false(e.expired)
        local ttl = d:ttl(k)
        if ttl == 0 then
          assert.is_nil(e.ttl)
        else
          assert.is_true(math.abs(e.ttl - ttl) < 1, tostring(e.ttl))
        end
        if e.type == "list" then
          assert.equal(d:llen(k), e.items)
        else
          local v, flags = d:get(k)
          assert.equal(flags or 0, e.flags)
          if e.value_hex then
            assert.equal(v, (e.value_hex:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)))
          else
            assert.equal(v, e.value)
            assert.equal(math.type(v) or type(v), e.type == "string" and "string" or
                         e.type == "boolean" and "boolean" or e.type)
          end
        end
      end
      assert.is_true(by.soon.expired)
      assert.equal(0, by.soon.ttl)
      assert.equal("ff0062696e", by.ff0062696e.key_hex)
      assert.is_nil(by.ff0062696e.key)
      assert.equal("01ff", by.ff0062696e.value_hex)
      assert.is_nil(by.ff0062696e.value)
    end)

    it("refuses a misaligned offset (2), and says what is there when it is no dictionary (1)", function()
      local seg, id = h.new_segment(65536)
      assert_usage(run({ "dict" }), "dict", "missing argument")
      assert_usage(run({ "dict", "x" }), "dict", "is not a segment id")
      assert_usage(run({ "dict", tostring(id), "--offset", "100" }), "dict", "not a multiple of 64")
      assert_usage(run({ "dict", tostring(id), "--offset", "-64" }), "dict", "at least 0")
      assert_fails(run({ "dict", tostring(id) }), "dict", "no dictionary at offset 0 %(bad magic%)")
      assert_fails(run({ "dict", tostring(id), "-o", "65536" }), "dict", "the segment has 65536 bytes")
      assert_fails(run({ "dict", tostring(id), "-o", "131072" }), "dict", "the segment has 65536 bytes")
      channel.new(seg, 0, 8192)
      assert_fails(run({ "dict", tostring(id) }), "dict", "no dictionary at offset 0 %(it holds a channel%)")
      local gone = h.new_id(64)
      shm.remove(gone)
      assert_fails(run({ "dict", tostring(gone) }), "dict", "no segment with id " .. gone)
    end)

    it("refuses a header out of range and another layout version", function()
      local seg, id = h.new_segment(65536)
      dict.new(seg, 0, 32768)
      seg:pack("I8", 8, 65536 + 64) -- region: past the segment end
      assert_fails(run({ "dict", tostring(id) }), "dict", "corrupt %(header out of range%)")
      seg:pack("I8", 8, 65536) -- in the segment, but not the geometry the header has
      assert_fails(run({ "dict", tostring(id) }), "dict", "corrupt %(header out of range%)")
      seg:pack("I8", 8, 32768)
      ok({ "dict", tostring(id) })
      seg:pack("I4", 4, 2)
      assert_fails(run({ "dict", tostring(id) }), "dict", "layout version 2; this sysvshm reads 1")
    end)

    it("lists what it can verify of a damaged dictionary and reports the rest, status 1", function()
      local seg, id = h.new_segment(16384)
      local d = dict.new(seg)
      d:set("a", 1)
      d:set("keep", "me")
      -- the entry of "a": its key follows its 56-byte header
      local base = 0
      for i = 512, #seg - 64, 8 do
        if seg:unpack("I4", i + 4) == 0x52544e45 and seg:read(i + 56, 1) == "a" and
           seg:unpack("I4", i + 24) == 1 then
          base = i
        end
      end
      assert.is_true(base > 0)
      local good = seg:read(0)

      -- its chain's link points at itself: a loop
      seg:pack("I4", base + 8, base)
      local r = run({ "dict", tostring(id) })
      assert.equal(1, r.code, h.explain(r))
      assert.matches('\n"a" +integer', r.stdout)
      assert.matches('\n"keep" +string', r.stdout)
      assert.matches("^sysvshm dict: segment %d+: bucket %d+: entry at " .. base
                     .. " reached twice %(a loop or a shared chain%)\n$", r.stderr)

      -- its tag overwritten: no entry there, the rest is listed
      seg:write(0, good)
      seg:pack("I4", base + 4, 0x41414141)
      r = run({ "dict", tostring(id) })
      assert.equal(1, r.code, h.explain(r))
      assert.not_matches('"a"', r.stdout)
      assert.matches('\n"keep" +string', r.stdout)
      assert.matches("^sysvshm dict: segment %d+: bucket %d+: no entry at " .. base .. "\n$", r.stderr)

      -- its key changed: the hash no longer matches
      seg:write(0, good)
      seg:write(base + 56, "b")
      r = run({ "dict", tostring(id) })
      assert.equal(1, r.code, h.explain(r))
      assert.matches("entry at " .. base .. ": its hash does not match its key or bucket", r.stderr)
      assert.is_not_nil(d:check()) -- the module's own walk agrees

      -- every byte of the heap garbage: no crash, no traceback, status 1 or 0
      for i = 0, 20 do
        seg:write(0, good)
        local junk = {}
        for j = 1, 4096 do junk[j] = string.char((j * 7919 + i * 104729) % 251) end
        seg:write(512 + i * 64, table.concat(junk))
        r = run({ "dict", tostring(id), "--json" })
        assert.is_true(r.code == 0 or r.code == 1, h.explain(r))
        if r.code == 0 then json_decode(r.stdout) end
      end
    end)

    it("says so when writers never let it copy a consistent snapshot", function()
      local seg, id, d = filled()
      seg:atomic_add(128, 1) -- the sequence number odd: a writer inside a change
      local r = ok({ "dict", tostring(id) })
      assert.matches("%(writers kept changing it: not a consistent snapshot%)\n$", r.stdout)
      assert.matches('\n"b" +boolean', r.stdout)
      assert.is_false(json_decode(ok({ "dict", tostring(id), "--json" }).stdout).consistent)
      seg:atomic_add(128, 1)
      assert.is_true(json_decode(ok({ "dict", tostring(id), "--json" }).stdout).consistent)
      assert.is_nil(d:check())
    end)

    it("fails with status 1 when the output cannot be written", function()
      local _, id = filled()
      for _, args in ipairs({ { "dict", tostring(id) }, { "dict", tostring(id), "--json" } }) do
        local r = run(args, nil, " >/dev/full")
        assert.equal(1, r.code, h.explain(r))
        assert.matches("^sysvshm dict: cannot write the output: ", r.stderr)
      end
    end)
  end)

  describe("stat on what a segment holds", function()
    it("names a dictionary or a channel at offset 0, and nothing in other segments", function()
      local dict = require "sysvshm.dict"
      local channel = require "sysvshm.channel"
      local seg, id = h.new_segment(65536)
      local function holds()
        local t = json_decode(ok({ "stat", "--json", tostring(id) }).stdout)
        local text = ok({ "stat", tostring(id) }).stdout:match("\nholds +([^\n]*)\n")
        return t.holds, t.holds_version, text
      end
      assert.same({}, { holds() })
      dict.new(seg)
      assert.same({ "dict", 1, "a sysvshm.dict at offset 0 (layout version 1): sysvshm dict " .. id },
                  { holds() })
      seg:fill(0)
      channel.new(seg)
      local what, version, text = holds()
      assert.equal("channel", what)
      assert.equal(seg:unpack("=I4", 4), version)
      assert.equal(("a sysvshm.channel at offset 0 (layout version %d)"):format(version), text)
      local tiny = select(2, h.new_segment(4))
      assert.is_nil(json_decode(ok({ "stat", "--json", tostring(tiny) }).stdout).holds)
    end)

    it("shows the numbers from before its look, and --no-peek does not look", function()
      local id = h.new_id(16384)
      local r = ok({ "stat", tostring(id) }) -- never attached before: it shows so
      assert.matches("\nlpid +0\n", r.stdout)
      assert.matches("\natime +0 %(never%)\n", r.stdout)
      local st = assert(shm.stat(id)) -- but it did attach, once
      assert.is_true(st.lpid > 0 and st.atime > 0 and st.nattch == 0)
      local id2 = h.new_id(16384)
      r = ok({ "stat", "--no-peek", tostring(id2) })
      assert.is_nil(r.stdout:find("\nholds", 1, true))
      st = assert(shm.stat(id2))
      assert.equal(0, st.lpid)
      assert.equal(0, st.atime)
    end)
  end)

  describe("with output that cannot be written", function()
    -- The command with standard output to /dev/full: status 1, the message.
    local function full(args, redirect)
      local r = run(args, "timeout 30 ", " " .. (redirect or ">/dev/full"))
      assert.equal(1, r.code, h.explain(r))
      assert.matches("^sysvshm[ %w]*: cannot write the output: ", r.stderr)
      assert.equal(1, select(2, r.stderr:gsub("\n", "")), r.stderr)
      return r
    end

    -- The ids of the segments there are now.
    local function ids()
      local t = {}
      for _, st in ipairs(assert(shm.list())) do t[st.id] = true end
      return t
    end

    it("/dev/full is there and refuses writes", function()
      local r = h.sh("printf x >/dev/full")
      assert.is_false(r.ok, "a write to /dev/full succeeded")
    end)

    it("fails every command's usage and the version, status 1", function()
      full({ "--help" })
      full({ "--version" })
      full({ "help" })
      for _, c in ipairs(COMMANDS) do
        full({ "help", c })
        full({ c, "--help" })
      end
    end)

    it("fails ls, stat, dump and watch, status 1", function()
      local seg, id = h.new_segment(4096)
      seg:write(0, "hello")
      local key = key_of(h.tmpfile())
      h.track(assert(shm.create(key, 64)))
      local R = h.tmpfile() .. ".lua"
      local f = assert(io.open(R, "w"))
      f:write('return require("sysvshm.layout").struct({{"a", "i8"}, {"s", "c16"}}, "r")')
      f:close()
      full({ "ls" })
      full({ "ls", "--json" })
      full({ "stat", tostring(id) })
      full({ "stat", tostring(id), "--json" })
      full({ "stat", "--key", hexkey(key) })
      full({ "dump", tostring(id) })
      full({ "dump", tostring(id), "--layout", R })
      full({ "watch", tostring(id), "--layout", R, "--frames", "2", "--interval", "0" })
      -- without --frames it would run for ever if the failed write went unnoticed
      -- (full runs it under timeout 30, whose status 124 would fail the test)
      full({ "watch", tostring(id), "--layout", R, "--interval", "0" })
      os.remove(R)
    end)

    it("fails a dump that fills the buffer many times over, without writing the rest", function()
      local seg, id = h.new_segment(1024 * 1024)
      seg:fill(0x41)
      full({ "dump", tostring(id) })
    end)

    it("fails rm after doing its work (the segments are gone), status 1", function()
      local id = h.new_id(64)
      full({ "rm", "--dry-run", tostring(id) })
      assert.is_truthy(shm.stat(id))
      full({ "rm", tostring(id) })
      local st, _, errno = shm.stat(id)
      assert.is_nil(st)
      assert.is_true(errno == shm.EINVAL or errno == shm.EIDRM, tostring(errno))
      local key = key_of(h.tmpfile())
      id = h.track(assert(shm.create(key, 64)))
      full({ "rm", "--key", tostring(key) })
      assert.is_nil(shm.stat(id))
    end)

    it("new removes the segment it created when it cannot print the id", function()
      for _, redirect in ipairs({ ">/dev/full", ">&-" }) do
        local before = ids()
        local r = full({ "new", "--size", "4K" }, redirect)
        assert.matches("; segment %d+ removed again\n$", r.stderr)
        local made = math.tointeger(tonumber(r.stderr:match("segment (%d+) removed again")))
        assert.is_nil(before[made], "the id it names was there before")
        h.track(made) -- in case it is still there: cleaned up, but the test fails below
        for id in pairs(ids()) do
          assert.is_true(before[id], ("segment %d left behind (%s): %s"):format(id, redirect, h.explain(r)))
        end
        local key = key_of(h.tmpfile())
        full({ "new", "--size", "64", "--key", hexkey(key) }, redirect)
        local id, _, errno = shm.open(key)
        if id then h.track(id) end
        assert.is_nil(id, "the keyed segment was left behind")
        assert.equal(shm.ENOENT, errno)
      end
    end)
  end)
end)
