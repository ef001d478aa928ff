-- The rockspec, the Makefile and the sources agree: every C file is
-- compiled, every Lua module and demo is installed, the version has one
-- value, and the rockspec installs offline into a fresh tree.

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
    assert.same(sorted(lines_of("ls lua/sysvshm/*.lua lua/sysvshm/testing/*.lua lua/demo/*.lua")), sorted(listed))
  end)

  it("reports the rockspec's version as _VERSION", function()
    local shm = require "sysvshm"
    assert.equal("sysvshm " .. rs.version, shm._VERSION)
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
    -- the command, through luarocks' wrapper that sets the tree's paths
    local cmd = lines_of("env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 '" .. tree .. "/bin/sysvshm' --version")
    assert.matches(rs.version, cmd[1], 1, true)
  end)
end)
