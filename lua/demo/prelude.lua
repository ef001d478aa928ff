-- Shared start of the demo scripts: run from a checkout after `make`, they
-- find the modules there (tools/intree.lua says where); installed, the
-- usual search paths apply, since this only adds to them.  The checkout's
-- paths go first, unless a search path was set in the environment
-- (LUA_PATH_5_4, LUA_CPATH_5_4 or their unversioned forms): an explicit
-- choice wins, the checkout comes after it.
--
--     dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")
local root = ((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/../.."
local f = io.open(root .. "/tools/intree.lua")
if f then
  f:close()
  dofile(root .. "/tools/intree.lua").add(root)
end
