-- Shared start of the demo scripts: run from a checkout after `make`, they
-- find the modules there; installed, the usual search paths apply, since
-- this only adds to them.  The checkout's paths go first, unless a search
-- path was set in the environment (LUA_PATH_5_4, LUA_CPATH_5_4 or their
-- unversioned forms): an explicit choice wins, the checkout comes after it.
--
--     dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = dir .. "/../.."

local function exists(path)
  local f = io.open(path)
  return f ~= nil and f:close()
end

-- `current` with `ours` added: in front, or behind when `var` is set.
local function add(current, ours, var)
  if os.getenv(var .. "_5_4") or os.getenv(var) then
    return current .. ";" .. ours
  end
  return ours .. ";" .. current
end

if exists(root .. "/lua/sysvshm/init.lua") then
  package.path = add(package.path, root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua", "LUA_PATH")
end
if exists(root .. "/build/sysvshm/core.so") then
  package.cpath = add(package.cpath, root .. "/build/?.so", "LUA_CPATH")
end
