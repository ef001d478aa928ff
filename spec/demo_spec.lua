-- The writer/reader demo (lua/demo), run end to end as separate lua5.4
-- processes. Every test makes its own key from a fresh temporary file, so
-- tests never meet each other or a demo someone runs with the defaults, and
-- after_each removes any segment, process and file a test left behind.
local h = require "helpers"
local shm = h.shm

local PROJ = 0x5d -- with a fresh file per test, the key is ours alone

local q = h.quote   -- quote for sh
local ROOT = h.root -- the checkout's root, absolute

-- Children use the in-tree build (absolute paths: they run elsewhere too;
-- under make check, the sanitizer build: h.lua_cpath).
local ENV = ("LUA_PATH_5_4=%s LUA_CPATH_5_4=%s"):format(q(h.lua_path), q(h.lua_cpath))

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

local function lines(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do
    t[#t + 1] = line
  end
  return t
end

local function quoted(args)
  local t = {}
  for i, a in ipairs(args) do
    t[i] = q(a)
  end
  return t
end

-- The shell command that runs a demo script from the checkout's root, as
-- the README does; `bare`: from /, without any LUA_PATH/LUA_CPATH.
local function command(script, args, bare)
  local words = { "cd", q(ROOT), "&&", ENV, "lua5.4", "lua/demo/" .. script }
  if bare then
    words = { "cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH -u LUA_CPATH",
              "lua5.4", q(ROOT .. "/lua/demo/" .. script) }
  end
  table.move(quoted(args), 1, #args, #words + 1, words)
  return table.concat(words, " ")
end

-- What each test made, for after_each.
local keys, files, procs, segs

-- A fresh key: ftok of a new temporary file.
local function fresh_key()
  local path = os.tmpname()
  files[#files + 1] = path
  local key = assert(shm.ftok(path, PROJ))
  keys[#keys + 1] = key
  return key, { "--path", path, "--proj", tostring(PROJ) }
end

local function concat(a, b)
  local t = { table.unpack(a) }
  table.move(b, 1, #b, #t + 1, t)
  return t
end

-- Run a demo script to the end: status, stdout, stderr.
local function run(script, args, bare)
  local out, err = os.tmpname(), os.tmpname()
  files[#files + 1], files[#files + 2] = out, err
  local _, how, code = os.execute(("{ %s; } >%s 2>%s </dev/null")
                                  :format(command(script, args, bare), q(out), q(err)))
  return how == "exit" and code or 128 + code, slurp(out), slurp(err)
end

-- Start a demo script in the background. SIGINT must not be ignored (as it
-- is for background jobs of sh), hence env --default-signal; a subshell
-- waits for it and writes its exit status to a file.
local function spawn(script, args)
  local p = { out = os.tmpname(), err = os.tmpname(), status = os.tmpname() }
  files[#files + 1], files[#files + 2], files[#files + 3] = p.out, p.err, p.status
  os.remove(p.status) -- it appears when the process has ended
  local cmd = ("cd %s && { env --default-signal=INT %s lua5.4 lua/demo/%s >%s 2>%s </dev/null &"
               .. " echo $!; wait $!; echo $? >%s.part; mv %s.part %s; } &")
    :format(q(ROOT), ENV, script .. " " .. table.concat(quoted(args), " "), q(p.out), q(p.err),
            q(p.status), q(p.status), q(p.status))
  -- Read only the pid line: the subshell keeps the pipe open until it ends.
  local sh = assert(io.popen(cmd))
  p.pid = assert(math.tointeger(tonumber(sh:read("l"))))
  sh:close()
  procs[#procs + 1] = p
  return p
end

-- Wait for a spawned process: status, stdout, stderr (nil on timeout).
local function finish(p, timeout)
  for _ = 1, timeout / 0.02 do
    local s = slurp(p.status)
    if s and s:match("%d") then
      p.done = true
      return math.tointeger(tonumber(s:match("%d+"))), slurp(p.out), slurp(p.err)
    end
    shm.sleep(0.02)
  end
  return nil, slurp(p.out), slurp(p.err)
end

-- Wait until a segment exists for key; its id.
local function wait_segment(key, timeout)
  return h.wait_until(function() return (shm.open(key)) end,
                      "a segment for key " .. key, timeout or 5)
end

local function assert_gone(key, id)
  local found, _, errno = shm.open(key)
  assert.is_nil(found)
  assert.equal(shm.ENOENT, errno)
  if id then
    local st, _, e = shm.stat(id)
    assert.is_nil(st)
    assert.is_true(e == shm.EINVAL or e == shm.EIDRM)
  end
end

local function assert_no_traceback(...)
  for i = 1, select("#", ...) do
    assert.not_matches("traceback", (select(i, ...)), 1, true)
  end
end

describe("demo writer/reader", function()
  before_each(function()
    keys, files, procs, segs = {}, {}, {}, {}
  end)

  after_each(function()
    for _, p in ipairs(procs) do
      if not p.done and not slurp(p.status) then
        os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
        finish(p, 2)
      end
    end
    for _, seg in ipairs(segs) do
      seg:detach()
    end
    for _, key in ipairs(keys) do
      local id = shm.open(key)
      if id then
        shm.remove(id)
      end
    end
    for _, f in ipairs(files) do
      os.remove(f)
      os.remove(f .. ".part")
    end
  end)

  it("runs end to end: the reader prints growing runs of A and exits 0 after the writer removes the segment",
     function()
    local key, kargs = fresh_key()
    local w = spawn("writer.lua", concat(kargs, { "--interval", "0.05", "--count", "20" }))
    local id = wait_segment(key)
    local r = spawn("reader.lua", concat(kargs, { "--interval", "0.02" }))

    local rstatus, rout, rerr = finish(r, 10)
    local wstatus, wout, werr = finish(w, 10)
    assert.equal(0, wstatus, werr)
    assert.equal(0, rstatus, rerr)
    assert.equal("", wout)
    assert_no_traceback(rerr, werr)

    local got = lines(rout)
    assert.is_true(#got >= 2, rout)
    assert.equal(rout, table.concat(got, "\n") .. "\n") -- only whole lines
    local prev = 0
    for _, line in ipairs(got) do
      assert.matches("^A*$", line)
      assert.is_true(#line >= prev, "shrank: " .. rout)
      prev = #line
    end
    -- The reader prints once more after the removal: the writer's last string.
    assert.equal(("A"):rep(20), got[#got])

    assert.equal(tostring(id), werr:match("segment id (%d+)"))
    assert_gone(key, id)
  end)

  it("wraps at the end of the segment without writing past byte 4095", function()
    local key, kargs = fresh_key()
    local w = spawn("writer.lua", concat(kargs, { "--interval", "0.0003", "--count", "5000" }))
    local id = wait_segment(key)
    local seg = assert(shm.attach(id, { readonly = true }))
    segs[#segs + 1] = seg
    assert.equal(4096, #seg)

    -- Watch while it runs: always a string of A's, at most 4095 long.
    local bad
    repeat
      local s = seg:cstring(0)
      if not s:match("^A*$") or #s > 4095 then
        bad = bad or s
      end
      local st = shm.stat(id)
      shm.sleep(0.001)
    until not st or st.removed
    assert.is_nil(bad)

    -- Our attachment keeps the removed segment: 5000 = 4095 + 905 appends,
    -- so 905 A's and their NUL, then the first round's A's and its NUL in
    -- the last byte.
    assert.equal(("A"):rep(905) .. "\0" .. ("A"):rep(4095 - 906) .. "\0", seg:read(0))
    local status, _, err = finish(w, 10)
    assert.equal(0, status, err)
    seg:detach()
    assert_gone(key, id)
  end)

  it("removes its segment on SIGINT, even in the middle of a long sleep", function()
    local key, kargs = fresh_key()
    local w = spawn("writer.lua", concat(kargs, { "--interval", "30" }))
    local id = wait_segment(key)
    shm.sleep(0.2)
    local t0 = os.time()
    os.execute("kill -INT " .. w.pid)
    local status, out, err = finish(w, 5)
    assert.equal(130, status, err)
    assert.is_true(os.time() - t0 <= 3)
    assert.equal("", out)
    assert.matches("interrupted, segment removed", err, 1, true)
    assert_no_traceback(err)
    assert_gone(key, id)
  end)

  it("reader stops quietly on SIGINT", function()
    local key, kargs = fresh_key()
    local w = spawn("writer.lua", concat(kargs, { "--interval", "0.05" }))
    wait_segment(key)
    local r = spawn("reader.lua", concat(kargs, { "--interval", "0.05" }))
    shm.sleep(0.3)
    os.execute("kill -INT " .. r.pid)
    local rstatus, rout, rerr = finish(r, 5)
    os.execute("kill -INT " .. w.pid)
    local wstatus = finish(w, 5)
    assert.equal(130, rstatus)
    assert.equal(130, wstatus)
    assert.equal("", rerr)
    assert.matches("^A*\n", rout)
    assert_gone(key)
  end)

  it("writer refuses a key that is in use and leaves that segment alone", function()
    local key, kargs = fresh_key()
    local id = assert(shm.create(key, 64))
    local status, out, err = run("writer.lua", concat(kargs, { "--count", "1" }))
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal(1, #lines(err), err)
    assert.matches("already exists", err, 1, true)
    local st = assert(shm.stat(id))
    assert.equal(64, st.size)
    assert.is_false(st.removed)
    assert(shm.remove(id))
  end)

  it("writer with a --path that does not exist exits 1 with one line", function()
    local status, out, err = run("writer.lua", { "--path", "/nonexistent/sysvshm-demo" })
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal(1, #lines(err), err)
    assert.matches("^writer%.lua: cannot make a key from /nonexistent/sysvshm%-demo: ftok: ", err)
  end)

  it("run.sh (make demo) runs the pair to the end and exits 0", function()
    local out, err = os.tmpname(), os.tmpname()
    files[#files + 1], files[#files + 2] = out, err
    local ok = os.execute(("cd %s && %s sh lua/demo/run.sh >%s 2>%s </dev/null")
                          :format(q(ROOT), ENV, q(out), q(err)))
    local stdout, stderr = slurp(out), slurp(err)
    assert.is_true(ok, stderr)
    assert.matches("^A+\n", stdout)
    assert.matches(("A"):rep(15) .. "\n$", stdout)
    assert.matches("writer exited 0, reader exited 0", stderr, 1, true)
    local id = stderr:match("segment id (%d+)")
    assert.is_nil(shm.stat(math.tointeger(tonumber(id))))
  end)

  it("reader with no writer exits non-zero with a one-line message and the usage", function()
    local _, kargs = fresh_key()
    local status, out, err = run("reader.lua", kargs)
    assert.equal(1, status)
    assert.equal("", out)
    local msg = lines(err)
    assert.matches("^reader%.lua: no segment for ftok%(.*%): start writer%.lua first$", msg[1])
    assert.equal("usage: reader.lua [options]", msg[2])
    assert_no_traceback(err)
  end)

  it("finds the module from a checkout without LUA_PATH_5_4, from any directory", function()
    local _, kargs = fresh_key()
    local status, out, err = run("reader.lua", kargs, true)
    assert.equal(1, status, err)
    assert.equal("", out)
    assert.matches("^reader%.lua: no segment", err)
  end)

  describe("bad options", function()
    local common = {
      { "--bogus" }, { "--proj" }, { "--proj", "abc" }, { "--proj", "0" }, { "--proj=256" },
      { "--interval", "-1" }, { "--interval", "soon" }, { "--path" }, { "extra" },
      { "--help=yes" },
    }
    for _, script in ipairs({ "writer.lua", "reader.lua" }) do
      local cases = { table.unpack(common) }
      if script == "writer.lua" then
        cases[#cases + 1] = { "--count", "0" }
        cases[#cases + 1] = { "--count", "1.5" }
      else
        cases[#cases + 1] = { "--count", "5" }
      end
      for _, args in ipairs(cases) do
        it(script .. " " .. table.concat(args, " "), function()
          local status, out, err = run(script, args)
          assert.equal(2, status)
          assert.equal("", out)
          local msg = lines(err)
          assert.matches("^" .. script:gsub("%.", "%%.") .. ": %S", msg[1])
          assert.equal("usage: " .. script .. " [options]", msg[2])
          assert_no_traceback(err)
        end)
      end

      it(script .. " --help prints the usage on stdout and exits 0", function()
        local status, out, err = run(script, { "--help" })
        assert.equal(0, status)
        assert.equal("", err)
        assert.matches("^usage: " .. script:gsub("%.", "%%.") .. " %[options%]\n", out)
        assert.matches("--interval S", out, 1, true)
      end)
    end
  end)
end)
