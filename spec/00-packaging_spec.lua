-- The rockspec, the Makefile and the sources agree: every C file is
-- compiled, every Lua module and demo is installed, the version has one
-- value, and the rockspec installs offline into a fresh tree, from which
-- the command and the demos run as the README says.

local shm = require "sysvshm"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function lines_of(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local function load_rockspec()
  local env = {}
  local chunk = assert(load(slurp("sysvshm-scm-1.rockspec"), "rockspec", "t", env))
  chunk()
  return env
end

local function sorted(t)
  table.sort(t)
  return t
end

describe("packaging", function()
  local rs = load_rockspec()

  it("compiles every C source file", function()
    local listed = {}
    for _, f in ipairs(rs.build.modules["sysvshm.core"].sources) do listed[#listed + 1] = f end
    assert.same(sorted(lines_of("ls src/*.c")), sorted(listed))
  end)

  it("installs every Lua module and demo script", function()
    local listed = {}
    for name, src in pairs(rs.build.modules) do
      if type(src) == "string" then listed[#listed + 1] = src
      else assert.equal("sysvshm.core", name) end
    end
    for name, src in pairs(rs.build.install.lua) do
      assert.equal("sysvshm.demo." .. src:match("^lua/demo/(.*)%.lua$"), name)
      listed[#listed + 1] = src
    end
    assert.same(sorted(lines_of("find lua -name '*.lua'")), sorted(listed))
  end)

  it("lists as demos the scripts of lua/demo but the prelude and the layout file", function()
    local names = {}
    for _, d in ipairs(require("sysvshm.cli.commands.demo").DEMOS) do
      names[#names + 1] = "lua/demo/" .. d[1] .. ".lua"
    end
    local files = {}
    for _, f in ipairs(lines_of("ls lua/demo/*.lua")) do
      if not f:match("/prelude%.lua$") and not f:match("/record_layout%.lua$") then files[#files + 1] = f end
    end
    assert.same(sorted(files), sorted(names))
  end)

  it("reports the rockspec's version as _VERSION", function()
    assert.equal("sysvshm " .. rs.version, shm._VERSION)
  end)

  it("luarocks test runs make test, which runs busted for Lua 5.4 in the checkout, offline", function()
    -- a busted that records how it is called stands in for the real one
    -- (the suite running itself would recurse); make finds it through
    -- BUSTED, which the Makefile takes from the environment
    local dir = os.tmpname()
    os.remove(dir)
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    assert.is_true(os.execute("mkdir '" .. dir .. "'"))
    local function fake(status)
      local f = assert(io.open(dir .. "/busted", "w"))
      f:write("#!/bin/sh\n", "pwd >'", dir, "/called'\n", "printf '%s\\n' \"$@\" >>'", dir, "/called'\n",
        "echo '1 success / 0 failures / 0 errors / 0 pending : 0.0 seconds'\n", "exit ", status, "\n")
      f:close()
      assert.is_true(os.execute("chmod +x '" .. dir .. "/busted'"))
    end
    local run = "BUSTED='" .. dir .. "/busted' luarocks --lua-version=5.4 test >'" .. dir .. "/out' 2>&1"
    fake(0)
    local ok = os.execute(run)
    assert.is_true(ok, slurp(dir .. "/out"))
    local here = lines_of("pwd")[1]
    assert.same({ here, "--lua=lua5.4" }, lines_of("cat '" .. dir .. "/called'"))
    -- a failing suite fails luarocks test
    fake(1)
    assert.is_falsy(os.execute(run), slurp(dir .. "/out"))
  end)

  it("installs offline with luarocks into a fresh tree, and the module loads", function()
    local tree = os.tmpname()
    os.remove(tree)
    finally(function() os.execute("rm -rf '" .. tree .. "'") end)
    local ok = os.execute("luarocks --lua-version=5.4 make --tree='" .. tree
      .. "' sysvshm-scm-1.rockspec >/dev/null 2>&1")
    assert.is_true(ok, "luarocks make failed")
    local out = lines_of("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 -e \""
      .. "package.path='" .. tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua' "
      .. "package.cpath='" .. tree .. "/lib/lua/5.4/?.so' "
      .. "local shm = require 'sysvshm' print(package.searchpath('sysvshm.core', package.cpath)) "
      .. "print(shm._VERSION, type(require 'sysvshm.channel'.new), type(require 'sysvshm.layout'.struct))\"")
    assert.equal(tree .. "/lib/lua/5.4/sysvshm/core.so", out[1])
    assert.equal("sysvshm " .. rs.version .. "\tfunction\tfunction", out[2])
    -- the command, through luarocks' wrapper that sets the tree's paths,
    -- run from elsewhere than the checkout with no search path set
    local bin = "cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH -u LUA_CPATH -u LUA_INIT '"
      .. tree .. "/bin/sysvshm' "
    local cmd = lines_of(bin .. "--version")
    assert.matches(rs.version, cmd[1], 1, true)
    -- a command that reaches the system: a segment made, seen and removed
    local made = lines_of(bin .. "new --size 4K")
    local id = math.tointeger(tonumber(made[1]))
    assert.is_not_nil(id, "sysvshm new printed no id")
    finally(function() shm.remove(id) end)
    assert.matches('^{"id":' .. id .. ',.*"size":4096,', lines_of(bin .. "stat " .. id .. " --json")[1])
    assert.same({ "removed 1 segment: " .. id }, lines_of(bin .. "rm " .. id))
    assert.is_nil(shm.stat(id))
    -- a demo, run from the installed tree: its workers are processes of
    -- their own, which find the tree's modules too
    local demo = lines_of(bin .. "demo counter --procs 2 --count 500 2>&1; echo status $?")
    assert.same({ "atomic_add: 1000 (expected 1000)", "mutex:      1000 (expected 1000)", "status 0" },
                { demo[2], demo[3], demo[4] }, table.concat(demo, "\n"))
    -- the writer and the reader together, as the README shows them
    local keyfile = os.tmpname()
    finally(function() os.remove(keyfile) end)
    local key = " --path '" .. keyfile .. "' --proj 0x45 --interval 0.1"
    local both = lines_of("(" .. bin .. "demo writer" .. key .. " --count 15 & sleep 0.3; "
      .. bin .. "demo reader" .. key .. "; echo reader $?; wait $!; echo writer $?) 2>/dev/null")
    assert.equal(("A"):rep(15), both[#both - 2], table.concat(both, "\n"))
    assert.same({ "reader 0", "writer 0" }, { both[#both - 1], both[#both] })
  end)
end)
