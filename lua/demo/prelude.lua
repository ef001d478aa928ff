-- Shared start of the demo scripts: run from a checkout after `make`, they
-- find the modules there; installed (or with LUA_PATH_5_4/LUA_CPATH_5_4
-- set) the usual search paths still apply, since this only adds to them.
--
--     dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = dir .. "/../.."

local function exists(path)
  local f = io.open(path)
  return f ~= nil and f:close()
end

if exists(root .. "/lua/sysvshm/init.lua") then
  package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
end
if exists(root .. "/build/sysvshm/core.so") then
  package.cpath = root .. "/build/?.so;" .. package.cpath
end
