-- The search paths of a checkout: its Lua modules and its C module, from
-- the directories tools/intree.mk names (the one home of "where the
-- in-tree build is").
--
--     local intree = dofile(root .. "/tools/intree.lua")
--     local path, cpath, build = intree.paths(root)  -- "<root>/lua/?.lua;...", "<root>/build/?.so", "<root>/build"
--     intree.add(root)  -- a checkout's modules and build added to package.path and package.cpath
--
-- As a script: `lua5.4 tools/intree.lua ROOT path|cpath|build` prints one
-- of them (the Makefile, tools/check.sh). Plain Lua 5.1 too: busted's
-- launcher reads .busted with it.
local M = {}

-- tools/intree.mk is next to this file.
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

--- The directories tools/intree.mk names: a table NAME -> value.
function M.dirs()
  local f = assert(io.open(HERE .. "/intree.mk", "r"))
  local t = {}
  for line in f:lines() do
    local name, value = line:match("^([%w_]+)=(.*)$")
    if name then t[name] = value end
  end
  f:close()
  return t
end

--- The checkout's Lua search path, its C search path and its build
-- directory, each under `root` (absolute when root is).
function M.paths(root)
  local d = M.dirs()
  local lua = root .. "/" .. d.LUA_DIR
  local build = root .. "/" .. d.BUILD
  return lua .. "/?.lua;" .. lua .. "/?/init.lua", build .. "/?.so", build
end

local function exists(path)
  local f = io.open(path)
  return f ~= nil and f:close()
end

-- `current` with `ours` added: in front, or behind when `var` is set in the
-- environment (an explicit choice wins, the checkout comes after it).
local function add(current, ours, var)
  if os.getenv(var .. "_5_4") or os.getenv(var) then
    return current .. ";" .. ours
  end
  return ours .. ";" .. current
end

--- Add the checkout at `root` to package.path and package.cpath: its Lua
-- modules when it has them, its build when it is built. Only ever adds.
function M.add(root)
  local path, cpath, build = M.paths(root)
  if exists(path:match("^(.-)%?") .. "sysvshm/init.lua") then
    package.path = add(package.path, path, "LUA_PATH")
  end
  if exists(build .. "/sysvshm/core.so") then
    package.cpath = add(package.cpath, cpath, "LUA_CPATH")
  end
end

if arg and arg[0] and arg[0]:match("intree%.lua$") then
  local path, cpath, build = M.paths(arg[1] or ".")
  local which = { path = path, cpath = cpath, build = build }
  io.write(assert(which[arg[2] or "path"], "path, cpath or build"), "\n")
end

return M
