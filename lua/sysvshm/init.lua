--- System V shared memory for Lua 5.4.
-- The functions of the C core (`sysvshm.core`), plus the helpers written in
-- Lua. Offsets are 0-based byte offsets. Misuse raises an error; a refusal
-- of the system returns `nil, message, errno`.
-- @module sysvshm
local core = require "sysvshm.core"

local M = {}
for k, v in pairs(core) do
  M[k] = v
end

return M
